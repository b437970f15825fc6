"""The component's entry module: componentize-py builds the `WitWorld` found here."""

from weir_sdk.guest import export

from bot_filter import BotFilter

WitWorld = export(BotFilter)
