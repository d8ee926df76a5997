"""CPU per message: /proc for processes on this machine, pids of loopback listeners."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from bench.cost import CostMeter, CpuTimes, PerMessage
from bench.procstat import cpu_times, listening_pid


def test_per_message_splits_user_and_system() -> None:
    per = PerMessage.of(CpuTimes(0.3, 0.1), 2000)
    assert per is not None
    assert round(per.us, 6) == 200.0 and round(per.user_us, 6) == 150.0
    assert PerMessage.of(CpuTimes(1.0, 0.0), 0) is None


def test_cost_meter_reads_the_cpu_a_process_used_in_the_window() -> None:
    meter = CostMeter([os.getpid()], None)
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    cost = meter.read(100)
    assert cost.gateway_cpu is not None and cost.gateway_cpu.total_s >= 0.03
    assert cost.gateway is not None and cost.gateway.us >= 300.0
    assert cost.gateways_measured == 1
    assert cost.redis is None and cost.redis_cpu is None


def test_cost_of_an_unknown_process_is_unknown() -> None:
    beyond = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has it
    assert cpu_times(beyond) is None
    assert CostMeter([beyond], None).read(10).gateway is None
    cost = CostMeter([], None).read(10)
    assert cost.gateway is None and cost.gateways_measured == 0


def test_the_process_listening_on_a_loopback_port_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listening_pid("127.0.0.1", port) == os.getpid()
        assert listening_pid("10.0.0.1", port) is None  # another machine's: not looked up
    assert listening_pid("127.0.0.1", port) is None
