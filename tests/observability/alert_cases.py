"""Unit-test scenarios for every alert: series on which it fires, and series on which it
stays silent. ``test_alert_rules`` turns them into a ``promtool test rules`` file."""

from __future__ import annotations

from dataclasses import dataclass, field

J = 'job="wsops",instance="n1:9765"'


@dataclass(frozen=True)
class Case:
    fire: dict[str, str]  # series -> promtool values notation
    quiet: dict[str, str]
    eval_time: str
    labels: dict[str, str] = field(default_factory=lambda: {"job": "wsops",
                                                            "instance": "n1:9765"})


CASES: dict[str, Case] = {
    "WsopsNodeDown": Case(
        fire={f"up{{{J}}}": "1 1 0x10"}, quiet={f"up{{{J}}}": "1x12"}, eval_time="8m"),
    "WsopsDeliveryLatencyBurnFast": Case(
        fire={f'wsops_delivery_latency_seconds_bucket{{{J},le="0.01"}}': "0+50x100",
              f"wsops_delivery_latency_seconds_count{{{J}}}": "0+100x100"},
        quiet={f'wsops_delivery_latency_seconds_bucket{{{J},le="0.01"}}': "0+99x100",
               f"wsops_delivery_latency_seconds_count{{{J}}}": "0+100x100"},
        eval_time="80m", labels={"job": "wsops"}),
    "WsopsDeliveryLatencyBurnSlow": Case(
        fire={f'wsops_delivery_latency_seconds_bucket{{{J},le="0.01"}}': "0+90x420",
              f"wsops_delivery_latency_seconds_count{{{J}}}": "0+100x420"},
        quiet={f'wsops_delivery_latency_seconds_bucket{{{J},le="0.01"}}': "0+98x420",
               f"wsops_delivery_latency_seconds_count{{{J}}}": "0+100x420"},
        eval_time="400m", labels={"job": "wsops"}),
    "WsopsAbnormalClosureSpike": Case(
        fire={f'wsops_connections_closed_total{{{J},route="/ws",code="1006"}}': "0+60x40",
              f'wsops_connections_closed_total{{{J},route="/ws",code="1000"}}': "0+60x40"},
        quiet={f'wsops_connections_closed_total{{{J},route="/ws",code="1006"}}': "0+3x40",
               f'wsops_connections_closed_total{{{J},route="/ws",code="1000"}}': "0+600x40"},
        eval_time="25m"),
    "WsopsEventLoopLag": Case(
        fire={f'wsops_event_loop_lag_seconds_bucket{{{J},le="0.1"}}': "0+50x30",
              f'wsops_event_loop_lag_seconds_bucket{{{J},le="0.25"}}': "0+50x30",
              f'wsops_event_loop_lag_seconds_bucket{{{J},le="+Inf"}}': "0+120x30"},
        quiet={f'wsops_event_loop_lag_seconds_bucket{{{J},le="0.1"}}': "0+120x30",
               f'wsops_event_loop_lag_seconds_bucket{{{J},le="0.25"}}': "0+120x30",
               f'wsops_event_loop_lag_seconds_bucket{{{J},le="+Inf"}}': "0+120x30"},
        eval_time="20m"),
    "WsopsMemoryLeakSuspected": Case(
        fire={f"wsops_memory_per_connection_bytes{{{J}}}": "1000000+3000x360",
              f"wsops_process_resident_memory_bytes{{{J}}}": "100000000+300000x360",
              f'wsops_connections_open{{{J},route="/ws"}}': "100x360"},
        # RSS grows because connections grow: memory per connection stays flat.
        quiet={f"wsops_memory_per_connection_bytes{{{J}}}": "1000000x360",
               f"wsops_process_resident_memory_bytes{{{J}}}": "100000000+300000x360",
               f'wsops_connections_open{{{J},route="/ws"}}': "100+0.3x360"},
        eval_time="300m"),
    "WsopsSlowConsumers": Case(
        fire={f'wsops_slow_consumer_disconnects_total{{{J},route="/ws"}}': "0+2x40"},
        quiet={f'wsops_slow_consumer_disconnects_total{{{J},route="/ws"}}': "0+0.5x40"},
        eval_time="30m"),
    "WsopsBrokerDown": Case(
        fire={f"wsops_broker_up{{{J}}}": "1 1 0x10"}, quiet={f"wsops_broker_up{{{J}}}": "1x12"},
        eval_time="8m"),
    "WsopsDrainStuck": Case(
        fire={f"wsops_draining{{{J}}}": "1x30",
              f'wsops_connections_open{{{J},route="/ws"}}': "50x30"},
        quiet={f"wsops_draining{{{J}}}": "1x30",
               f'wsops_connections_open{{{J},route="/ws"}}': "50 20 0x28"},
        eval_time="15m"),
    "WsopsNearConnectionCapacity": Case(
        fire={f'wsops_connections_open{{{J},route="/ws"}}': "9500x20",
              f"wsops_connections_max{{{J}}}": "10000x20"},
        quiet={f'wsops_connections_open{{{J},route="/ws"}}': "5000x20",
               f"wsops_connections_max{{{J}}}": "10000x20"},
        eval_time="10m"),
    "WsopsNearFdLimit": Case(
        fire={f"wsops_process_open_fds{{{J}}}": "19000x20",
              f"wsops_process_max_fds{{{J}}}": "20000x20"},
        quiet={f"wsops_process_open_fds{{{J}}}": "1000x20",
               f"wsops_process_max_fds{{{J}}}": "20000x20"},
        eval_time="10m"),
    "WsopsAuthFailureSpike": Case(
        fire={f'wsops_handshake_failures_total{{{J},route="/ws",reason="auth"}}': "0+60x40"},
        quiet={f'wsops_handshake_failures_total{{{J},route="/ws",reason="auth"}}': "0+6x40"},
        eval_time="25m"),
    "WsopsHeartbeatTimeouts": Case(
        fire={f'wsops_heartbeat_timeouts_total{{{J},route="/ws"}}': "0+30x40"},
        quiet={f'wsops_heartbeat_timeouts_total{{{J},route="/ws"}}': "0+1x40"},
        eval_time="25m"),
}
