"""An OTLP/HTTP receiver built from the official protobuf definitions (PyPI
`opentelemetry-proto`): decodes each export and appends one JSON line per span or metric to
the file named by its argument. Prints its port, then serves until killed."""

import http.server
import json
import sys
import threading

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

out = open(sys.argv[1], "a")
lock = threading.Lock()


def any_value(value):
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def attributes(pairs):
    return {pair.key: any_value(pair.value) for pair in pairs}


def spans(body):
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(body)
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "signal": "span",
                    "resource": resource,
                    "name": span.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "kind": span.kind,
                    "attributes": attributes(span.attributes),
                    "links": [
                        {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()}
                        for l in span.links
                    ],
                    "status": span.status.code,
                }


def metrics(body):
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.ParseFromString(body)
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                points = []
                for point in data.data_points:
                    if kind == "histogram":
                        value = {"count": point.count, "sum": point.sum}
                    else:
                        value = getattr(point, point.WhichOneof("value"))
                    points.append({"attributes": attributes(point.attributes), "value": value})
                yield {
                    "signal": "metric",
                    "resource": resource,
                    "name": metric.name,
                    "kind": kind,
                    "monotonic": getattr(data, "is_monotonic", None),
                    "points": points,
                }


RESPONSES = {
    "/v1/traces": (spans, trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": (metrics, metrics_service_pb2.ExportMetricsServiceResponse),
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path not in RESPONSES:
            self.send_error(404)
            return
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(415)
            return
        decode, response = RESPONSES[self.path]
        records = list(decode(body))
        with lock:
            for record in records:
                out.write(json.dumps(record) + "\n")
            out.flush()
        answer = response().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
