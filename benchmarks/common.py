"""Shared machinery: one fresh subprocess per measurement, timing, process memory, environment facts.

Memory is read from ``/proc/self/status`` (Linux): ``VmRSS`` (current resident set) and ``VmHWM`` (its peak, the
"high-water mark"). The peak is reset to the current RSS by writing ``5`` to ``/proc/self/clear_refs`` once the
model and its inputs are built, so ``peak − baseline`` is what the measured passes added. ``ru_maxrss`` is not
used on Linux: a ``spawn`` child inherits its parent's ``ru_maxrss`` through ``exec`` (a parent that once held
1.4 GiB gives every child a 1.4 GiB floor), whereas ``VmHWM`` belongs to the child's own address space. Elsewhere
(no ``/proc``) ``ru_maxrss`` is the fallback and the peak cannot be reset.

On a CUDA device (``measure(..., device="cuda")``) every call is followed by ``torch.cuda.synchronize`` before the
clock is read, and the device memory is read from PyTorch's caching allocator next to the RSS:
``torch.cuda.memory_allocated`` (baseline), ``torch.cuda.max_memory_allocated`` (peak, reset with
``torch.cuda.reset_peak_memory_stats`` where the RSS peak is reset) and ``torch.cuda.max_memory_reserved`` (what the
allocator held from the driver). The CUDA calls sit behind a device check, so the same code runs on the CPU.
"""

from __future__ import annotations

import datetime
import importlib
import multiprocessing as mp
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = [
    "Isolated",
    "autocast",
    "device_facts",
    "environment",
    "measure",
    "peak_gib",
    "print_result",
    "reset_peak",
    "rss_gib",
    "synchronize",
]

_GIB = 2**30
_STATUS = "/proc/self/status"


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None without procfs."""
    try:
        with open(_STATUS) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_gib() -> float:
    """Current resident set size of this process in GiB (``VmRSS``; fallback: the peak)."""
    kib = _status_kib("VmRSS")
    return kib / 2**20 if kib is not None else peak_gib()


def peak_gib() -> float:
    """Peak resident set size of this process in GiB since start or the last :func:`reset_peak` (``VmHWM``)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return maxrss / (_GIB if sys.platform == "darwin" else 2**20)


def reset_peak() -> bool:
    """Reset the peak RSS to the current RSS (Linux ``clear_refs``); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _is_cuda(device: str) -> bool:
    import torch

    return torch.device(device).type == "cuda"


def synchronize(device: str) -> None:
    """Wait until the work queued on ``device`` is done (``torch.cuda.synchronize``; nothing on the CPU)."""
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


def autocast(device: str, dtype: str | None) -> Any:
    """A fresh ``torch.autocast`` on ``device``'s type to ``dtype`` (``bfloat16``, ``float16``); off for None."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype or "bfloat16"),
                          enabled=dtype is not None)


def _cuda_memory(device: str) -> dict[str, float]:
    """Allocated, peak allocated and peak reserved memory of ``device`` in GiB (PyTorch's caching allocator)."""
    import torch

    return {"allocated": torch.cuda.memory_allocated(device) / _GIB,
            "peak": torch.cuda.max_memory_allocated(device) / _GIB,
            "reserved": torch.cuda.max_memory_reserved(device) / _GIB}


def measure(
    call: Callable[[], Any], *, repeats: int, warmup: int = 1, reset_after_warmup: bool = False, device: str = "cpu"
) -> dict[str, Any]:
    """Time ``call`` after ``warmup`` calls and record the memory of this process (and of a CUDA device) around it.

    Args:
        call: the work (a forward pass, a training step); its result is dropped.
        repeats: timed calls (the median and minimum are reported).
        warmup: untimed calls first (their durations are kept as ``warmup_s``).
        reset_after_warmup: reset the peak after the warm-up (``torch.compile``: the compiler's memory is then
            reported separately as ``warmup_peak_gib``); otherwise the peak covers warm-up and timed calls.
        device: where ``call`` queues its work; on CUDA each call is timed up to ``torch.cuda.synchronize`` and
            the device memory is recorded too.

    Returns:
        ``times_s``, ``median_s``, ``min_s``, ``cpu_median_s`` (median process CPU time of a call, all threads:
        less sensitive than wall time to other jobs on the machine), ``warmup_s`` (list), ``baseline_gib`` (RSS
        before the first call),
        ``peak_gib`` (peak RSS over the measured calls), ``delta_gib = peak − baseline``, ``warmup_peak_gib``,
        ``setup_peak_gib`` (peak before the first call: imports, model construction, inputs) and
        ``peak_reset`` (whether the peak could be reset; if not, peaks include the setup). All times in seconds,
        memory in GiB. On CUDA also ``device_baseline_gib`` (allocated before the first call),
        ``device_setup_peak_gib``, ``device_warmup_peak_gib``, ``device_peak_gib`` (peak allocated over the
        measured calls), ``device_delta_gib = device_peak − device_baseline`` and ``device_reserved_gib`` (peak
        reserved by the caching allocator since the process started).
    """
    import torch

    cuda = _is_cuda(device)
    device_memory: dict[str, float] = {}
    synchronize(device)
    if cuda:
        before = _cuda_memory(device)
        device_memory = {"device_setup_peak_gib": before["peak"], "device_baseline_gib": before["allocated"]}
        torch.cuda.reset_peak_memory_stats(device)
    setup_peak = peak_gib()
    baseline = rss_gib()
    was_reset = reset_peak()
    warm = []
    for _ in range(warmup):
        start = time.perf_counter()
        call()
        synchronize(device)
        warm.append(time.perf_counter() - start)
    warmup_peak = peak_gib()
    if cuda:
        device_memory["device_warmup_peak_gib"] = _cuda_memory(device)["peak"]
    if reset_after_warmup:
        reset_peak()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    peak = peak_gib()
    if cuda:
        after = _cuda_memory(device)
        device_memory.update(device_peak_gib=after["peak"], device_reserved_gib=after["reserved"],
                             device_delta_gib=after["peak"] - device_memory["device_baseline_gib"])
    return {
        "times_s": times,
        "median_s": statistics.median(times) if times else None,
        "min_s": min(times) if times else None,
        "cpu_median_s": statistics.median(cpu) if cpu else None,
        "warmup_s": warm,
        "baseline_gib": baseline,
        "peak_gib": peak,
        "delta_gib": peak - baseline,
        "warmup_peak_gib": warmup_peak,
        "setup_peak_gib": setup_peak,
        "peak_reset": was_reset,
        **device_memory,
    }


def _child(target: str, kwargs: dict[str, Any], threads: int, conn: Connection) -> None:
    """Subprocess body: set the thread count, run ``module:function`` and send its dict (or the error) back."""
    try:
        if hasattr(os, "setpgid"):
            os.setpgid(0, 0)  # own process group: a timeout kills the compile/loader workers it starts too
        import torch

        torch.set_num_threads(threads)
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name)
        conn.send({"ok": True, **function(**kwargs)})
    except BaseException as err:  # report anything, including MemoryError, to the parent
        lines = traceback.format_exception_only(type(err), err)
        conn.send({"ok": False, "error": "".join(lines).strip()[-2000:]})
    finally:
        conn.close()


class Isolated:
    """Runs functions in fresh subprocesses, one per call, and returns their result dicts.

    Args:
        threads: ``torch.set_num_threads`` in the child.
        start_method: ``spawn`` (default: a new interpreter per measurement) or ``forkserver`` (a fork of a
            server that has imported torch and accelmri once: the same isolation of memory and state, without
            the 1–2 s interpreter start; used by ``--tiny``).
        timeout: seconds before a child is killed and reported as timed out.
        budget: seconds from now for all calls together (None: no limit): a call gets at most what is left, and a
            call after the budget is spent is not started but recorded as skipped.
    """

    def __init__(self, threads: int, start_method: str = "spawn", timeout: float = 7200.0,
                 budget: float | None = None) -> None:
        self.threads = threads
        self.timeout = timeout
        self.budget = budget
        self.deadline = None if budget is None else time.perf_counter() + budget
        self.context = mp.get_context(start_method)
        if start_method == "forkserver":
            # torch._dynamo: imported lazily by FlopCounterMode and the optimisers (~1 s per process otherwise).
            preload = ["torch", "torch._dynamo", "torch.utils.flop_counter", "accelmri.models", "accelmri.losses",
                       "accelmri.data.datasets", "accelmri.data.readers.fastmri", "benchmarks.cases"]
            self.context.set_forkserver_preload(preload)

    def run(self, target: str, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run ``target`` (``"module:function"``, returning a dict) with ``kwargs`` in a fresh subprocess.

        Returns:
            The function's dict with ``ok: True``, or ``{"ok": False, "error": ...}`` when it raised, was killed
            (e.g. out of memory) or ran past the timeout, or ``{"ok": False, "skipped": ...}`` when the run's
            budget was spent before it started. ``process_s`` is the subprocess's wall time.
        """
        start = time.perf_counter()
        limit = self.timeout if timeout is None else timeout
        reason = f"timed out after {limit:.0f} s"
        if self.deadline is not None:
            left = self.deadline - start
            if left <= 0:
                return {"ok": False, "skipped": f"not run: the run budget of {self.budget:.0f} s was spent",
                        "process_s": 0.0}
            if left < limit:
                limit, reason = left, f"timed out after {left:.0f} s (the rest of the run budget)"
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_child, args=(target, kwargs, self.threads, sender))
        process.start()
        sender.close()
        result: dict[str, Any]
        try:
            if receiver.poll(limit):
                result = receiver.recv()
            else:
                _kill(process)
                result = {"ok": False, "error": reason}
        except EOFError:
            process.join()
            result = {"ok": False, "error": f"subprocess died (exit code {process.exitcode}; killed for memory?)"}
        except KeyboardInterrupt:  # the child has its own process group: Ctrl-C would not reach it
            _kill(process)
            raise
        finally:
            receiver.close()
        process.join()
        result["process_s"] = time.perf_counter() - start
        return result


def _kill(process: Any) -> None:
    """Kill a measurement's process group (the child and anything it started), else the child alone."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (AttributeError, OSError):
        process.kill()
    process.join()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2")))
    except OSError:
        pass
    return []


def environment(threads: int, start_method: str) -> dict[str, Any]:
    """Facts for the report header: date, versions, CPU, threads, process start method."""
    import torch

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "start_method": start_method,
    }


def _driver_version(index: int) -> str | None:
    """The NVIDIA driver version (``nvidia-smi``), or None where it cannot be read."""
    try:
        completed = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader",
                                    "-i", str(index)], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


def device_facts(device: str) -> dict[str, Any]:
    """Facts about the measuring device for the report header (run it in a subprocess: it initialises CUDA).

    On CUDA: the GPU's name, compute capability, memory (GiB), multiprocessors, the number of GPUs, the driver
    (``nvidia-smi``), CUDA and cuDNN versions torch was built with, and the float32 settings the ``fp32`` rows
    run under (PyTorch's defaults unless changed: TF32 convolutions on, float32 matmul precision ``highest``).

    Raises:
        RuntimeError: CUDA was asked for and is not available (a CPU build of torch, no driver, no GPU).
    """
    import torch

    facts: dict[str, Any] = {"device": device, "torch": torch.__version__}
    if not _is_cuda(device):
        return facts
    if not torch.cuda.is_available():
        raise RuntimeError(f"CUDA is not available: torch {torch.__version__} (CUDA build: {torch.version.cuda}), "
                           "needs a CUDA build of torch, an NVIDIA driver and a GPU")
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    properties = torch.cuda.get_device_properties(index)
    return {**facts, "gpu": properties.name, "capability": f"{properties.major}.{properties.minor}",
            "memory_gib": properties.total_memory / _GIB, "multiprocessors": properties.multi_processor_count,
            "gpus": torch.cuda.device_count(), "driver": _driver_version(index), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def print_result(label: str, result: dict[str, Any], unit: str = "s") -> None:
    """One progress line for a measurement row: its median time and peak memory (GPU when measured there), or its
    error / skip reason."""
    if result["ok"]:
        memory = (f"GPU peak {result['device_peak_gib']:.2f} GiB" if "device_peak_gib" in result
                  else f"peak {result['peak_gib']:.2f} GiB")
        print(f"  {label}: {result['median_s']:.3f} {unit}, {memory} ({result['process_s']:.1f} s)", flush=True)
    else:
        print(f"  {label}: {result.get('error') or result['skipped']}", flush=True)
