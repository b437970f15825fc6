"""The weir plugin SDK for Python: subclass `Transform`, and in the app module that
componentize-py builds, export it:

    from weir_sdk import Config, Context, Event, Needs, Transform

    class Tag(Transform):
        def __init__(self, config: Config):
            self.env = config.get("env") or "prod"

        def needs(self) -> Needs:
            return Needs.of_fields([])

        def process(self, event: Event, ctx: Context) -> None:
            event.set("env", self.env)
            ctx.emit(event)

    # app.py
    from weir_sdk.guest import export
    WitWorld = export(Tag)

Under the hood (`weir:transform@0.2.0`) the host hands the stage only what `needs` declares,
an emitted event goes back as the edits made to it, and state written during a call goes
back with the result. `weir_sdk.testing` runs the same class natively under pytest.
"""

from .config import Config
from .context import Context
from .event import Event
from .transform import GeoError, Level, Location, Needs, Transform, TtlRefresh

__all__ = ["Config", "Context", "Event", "GeoError", "Level", "Location", "Needs",
           "Transform", "TtlRefresh"]
