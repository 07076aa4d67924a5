"""Unit-test scenarios for every alert: series on which it fires, and series on which it
stays silent (plus further scenarios where one pair does not say enough: per-worker alerts, a
minimum volume, a burst that must not page). ``test_alert_rules`` turns them into a
``promtool test rules`` file."""

from __future__ import annotations

from dataclasses import dataclass, field

J = 'job="wsops",instance="n1:9765"'
NODE = {"job": "wsops", "instance": "n1:9765"}
TRICKLE = " ".join(str(minute // 5) for minute in range(61))  # +1 every 5 minutes, for an hour


@dataclass(frozen=True)
class Scenario:
    series: dict[str, str]  # series -> promtool values notation
    eval_time: str
    fires_with: dict[str, str] | None  # the alert's labels (severity aside); None: silent
    why: str


@dataclass(frozen=True)
class Case:
    fire: dict[str, str]  # series -> promtool values notation
    quiet: dict[str, str]
    eval_time: str
    labels: dict[str, str] = field(default_factory=lambda: dict(NODE))
    more: tuple[Scenario, ...] = ()

    def scenarios(self) -> list[Scenario]:
        return [Scenario(self.fire, self.eval_time, self.labels, "fires"),
                Scenario(self.quiet, self.eval_time, None, "silent"), *self.more]


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
    "WsopsCpuSaturated": Case(
        fire={f'process_cpu_seconds_total{{{J},worker="1"}}': "0+57x40"},  # 0.95 of a core
        # Two workers at 0.6 each: 1.2 cores for the node, but no process is saturated.
        quiet={f'process_cpu_seconds_total{{{J},worker="0"}}': "0+36x40",
               f'process_cpu_seconds_total{{{J},worker="1"}}': "0+36x40"},
        eval_time="30m", labels={**NODE, "worker": "1"},
        more=(Scenario({f"process_cpu_seconds_total{{{J}}}": "0x10 57+57x30"}, "28m", None,
                       "saturated for 13 minutes: still under its 15m `for`"),)),
    "WsopsFleetCannotLoseANode": Case(
        # Two nodes with limits of 1,000, 1,500 connections open: the other node alone holds
        # 1,000. Quiet: 800 open. More: CPU 1.9 cores on two one-process nodes (>0.9 x 1).
        fire={'wsops_connections_open{job="wsops",instance="a:9765",route="/ws"}': "750x30",
              'wsops_connections_open{job="wsops",instance="b:9765",route="/ws"}': "750x30",
              'wsops_connections_max{job="wsops",instance="a:9765"}': "1000x30",
              'wsops_connections_max{job="wsops",instance="b:9765"}': "1000x30"},
        quiet={'wsops_connections_open{job="wsops",instance="a:9765",route="/ws"}': "400x30",
               'wsops_connections_open{job="wsops",instance="b:9765",route="/ws"}': "400x30",
               'wsops_connections_max{job="wsops",instance="a:9765"}': "1000x30",
               'wsops_connections_max{job="wsops",instance="b:9765"}': "1000x30",
               'process_cpu_seconds_total{job="wsops",instance="a:9765"}': "0+20x30",
               'process_cpu_seconds_total{job="wsops",instance="b:9765"}': "0+20x30"},
        eval_time="25m", labels={"job": "wsops"},
        more=(Scenario({'process_cpu_seconds_total{job="wsops",instance="a:9765"}': "0+57x40",
                        'process_cpu_seconds_total{job="wsops",instance="b:9765"}': "0+57x40"},
                       "30m", {"job": "wsops"},
                       "1.9 cores busy on two one-process nodes: one could not carry it"),)),
    "WsopsMemoryLeakSuspected": Case(
        fire={f"wsops_memory_per_connection_bytes{{{J}}}": "1000000+3000x360",
              f"process_resident_memory_bytes{{{J}}}": "100000000+300000x360",
              f'wsops_connections_open{{{J},route="/ws"}}': "100x360"},
        # RSS grows because connections grow: memory per connection stays flat.
        quiet={f"wsops_memory_per_connection_bytes{{{J}}}": "1000000x360",
               f"process_resident_memory_bytes{{{J}}}": "100000000+300000x360",
               f'wsops_connections_open{{{J},route="/ws"}}': "100+0.3x360"},
        eval_time="300m"),
    "WsopsSlowConsumers": Case(
        fire={f'wsops_slow_consumer_disconnects_total{{{J},route="/ws"}}': "0+2x40"},
        quiet={f'wsops_slow_consumer_disconnects_total{{{J},route="/ws"}}': "0+0.5x40"},
        eval_time="30m"),
    "WsopsBrokerDown": Case(
        fire={f"wsops_broker_up{{{J}}}": "1 1 0x10"}, quiet={f"wsops_broker_up{{{J}}}": "1x12"},
        eval_time="8m"),
    "WsopsResumeFailures": Case(
        # Half of 10 resumes a minute fail, for 40 minutes.
        fire={f'wsops_resumes_total{{{J},recovered="false"}}': "0+5x60",
              f'wsops_resumes_total{{{J},recovered="true"}}': "0+5x60"},
        # A steady few: 1 in 21 fails.
        quiet={f'wsops_resumes_total{{{J},recovered="false"}}': "0+1x60",
               f'wsops_resumes_total{{{J},recovered="true"}}': "0+20x60"},
        eval_time="40m", labels={"job": "wsops"},
        more=(
            Scenario({f'wsops_resumes_total{{{J},recovered="false"}}': TRICKLE,
                      f'wsops_resumes_total{{{J},recovered="true"}}': "0x60"}, "40m", None,
                     "a quiet fleet where every resume fails, one each 5 minutes: under the "
                     "minimum volume"),
            Scenario({f'wsops_resumes_total{{{J},recovered="false"}}': "0x10 40 80 120x50",
                      f'wsops_resumes_total{{{J},recovered="true"}}': "0x60"}, "22m", None,
                     "a burst (a memory-broker node restarted) clears before its `for`"),
            Scenario({'wsops_resumes_total{job="wsops",instance="n1:9765",recovered="false"}':
                      "0+5x60",
                      'wsops_resumes_total{job="wsops",instance="n2:9765",recovered="true"}':
                      "0+5x60"}, "40m", {"job": "wsops"},
                     "fleet-wide: failures on one node, successes on another, one alert"),
        )),
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
        eval_time="10m",
        more=(Scenario({f'wsops_connections_open{{{J},worker="0",route="/ws"}}': "9500x20",
                        f'wsops_connections_open{{{J},worker="1",route="/ws"}}': "100x20",
                        f'wsops_connections_max{{{J},worker="0"}}': "10000x20",
                        f'wsops_connections_max{{{J},worker="1"}}': "10000x20"}, "10m",
                       {**NODE, "worker": "0"}, "--workers 2: the full worker, on its own"),)),
    "WsopsNearFdLimit": Case(
        fire={f"process_open_fds{{{J}}}": "19000x20",
              f"process_max_fds{{{J}}}": "20000x20"},
        quiet={f"process_open_fds{{{J}}}": "1000x20",
               f"process_max_fds{{{J}}}": "20000x20"},
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
