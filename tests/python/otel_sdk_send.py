"""Sends traces, metrics and logs to Sightline with the OpenTelemetry Python SDK.

A foreign client proving wire compatibility: spans over OTLP/gRPC and OTLP/HTTP, metrics over
OTLP/HTTP, logs over OTLP/gRPC. Exits non-zero if any export did not succeed.

usage: otel_sdk_send.py GRPC_ENDPOINT HTTP_BASE_URL
"""

import logging
import sys

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

grpc_endpoint, http_base = sys.argv[1], sys.argv[2]
results = []


def checked(cls):
    """The exporter class, recording whether each export succeeded."""

    class Checked(cls):
        def export(self, batch, *args, **kwargs):
            result = super().export(batch, *args, **kwargs)
            results.append((cls.__module__, result.name))
            return result

    return Checked


resource = Resource.create({"service.name": "python-sdk-client", "service.version": "1.0.0"})

grpc_spans = checked(GrpcSpanExporter)(endpoint=grpc_endpoint, insecure=True)
http_spans = checked(HttpSpanExporter)(endpoint=f"{http_base}/v1/traces")
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(grpc_spans))
tracer_provider.add_span_processor(SimpleSpanProcessor(http_spans))
tracer = tracer_provider.get_tracer("compat-test")
for i in range(10):
    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", "GET")
        span.set_attribute("http.route", "/checkout")
        span.set_attribute("http.response.status_code", 200)
        span.set_attribute("request_id", f"req-{i}")
        span.add_event("cart.loaded", {"items": 3})
tracer_provider.shutdown()

metric_exporter = checked(HttpMetricExporter)(endpoint=f"{http_base}/v1/metrics")
reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = meter_provider.get_meter("compat-test")
requests = meter.create_counter("http_requests_total", unit="{request}", description="Total HTTP requests")
duration = meter.create_histogram("http_request_duration_seconds", unit="s")
for status in ("200", "200", "500"):
    requests.add(1, {"method": "GET", "endpoint": "/checkout", "status_code": status})
    duration.record(0.042, {"method": "GET", "endpoint": "/checkout"})
meter_provider.shutdown()

log_exporter = checked(GrpcLogExporter)(endpoint=grpc_endpoint, insecure=True)
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
app_log = logging.getLogger("compat")
app_log.setLevel(logging.INFO)
app_log.addHandler(handler)
app_log.info("Request completed", extra={"request_id": "req-7", "status_code": 200})
logger_provider.shutdown()

print(results)
failed = [r for r in results if r[1] != "SUCCESS"]
if failed or len(results) < 4:
    print(f"exports failed: {failed} of {results}", file=sys.stderr)
    sys.exit(1)
