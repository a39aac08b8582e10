"""Headless OpenGL backend selection for MuJoCo, and the triton/Mesa guard.

dm_control reads ``MUJOCO_GL`` exactly once, when it is first imported, so :func:`prepare` must run
before anything imports ``dm_control`` or ``shimmy`` (``envs/__init__.py`` calls it first).

* ``MUJOCO_GL`` set by the user is honoured as it is.
* Otherwise EGL is probed (a headless EGL display on one of the devices, as dm_control opens it),
  then OSMesa (the library loads). The first that works is written into ``MUJOCO_GL`` (and
  ``PYOPENGL_PLATFORM``). If neither works, nothing is set and :func:`ensure_rendering` raises an
  error naming the missing libraries and the apt line that installs them.

Segfault trap (DESIGN.md §4): with the CUDA build of torch, importing ``triton`` after Mesa's EGL
or OSMesa is initialised kills the process (triton's LLVM clashes with Mesa's llvmpipe). torch imports
triton lazily through ``torch._dynamo`` (e.g. at the first Adam construction). dm_control initialises
its EGL display when it is *imported*, and the EGL probe below initialises one too, so :func:`prepare`
imports ``torch._dynamo`` (and with it triton) before either whenever triton is installed. Measured
with torch 2.14.1 + triton 3.8.0: without this, rendering then building SB3 SAC dies with SIGSEGV.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

APT_LINE = "apt-get install -y libegl1 libgl1-mesa-dri libosmesa6"
_EGL_PLATFORM_DEVICE_EXT = 0x313F


def _egl_works() -> bool:
    """True if libEGL opens a headless display on some EGL device (what dm_control's EGL backend does)."""
    try:
        egl = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return False
    get_proc = egl.eglGetProcAddress
    get_proc.restype = ctypes.c_void_p
    get_proc.argtypes = [ctypes.c_char_p]
    query_ptr = get_proc(b"eglQueryDevicesEXT")
    display_ptr = get_proc(b"eglGetPlatformDisplayEXT")
    if not query_ptr or not display_ptr:
        return False
    query_devices = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    )(query_ptr)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(display_ptr)
    devices = (ctypes.c_void_p * 16)()
    count = ctypes.c_int(0)
    if not query_devices(16, devices, ctypes.byref(count)):
        return False
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    for i in range(count.value):
        display = get_display(_EGL_PLATFORM_DEVICE_EXT, devices[i], None)
        if display and egl.eglInitialize(display, None, None):
            egl.eglTerminate(display)
            return True
    return False


def _osmesa_works() -> bool:
    for name in ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


_PROBES = {"egl": _egl_works, "osmesa": _osmesa_works}
_selection_error: str | None = None


def select_backend() -> str | None:
    """Set ``MUJOCO_GL`` (if unset) to the first headless backend that works; return the backend in use."""
    global _selection_error
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for name, works in _PROBES.items():
        if works():
            os.environ["MUJOCO_GL"] = name
            os.environ.setdefault("PYOPENGL_PLATFORM", name)
            return name
    _selection_error = (
        "No headless OpenGL backend for MuJoCo works on this machine: EGL (libEGL.so.1 with a usable "
        "device, Mesa's libgl1-mesa-dri for software rendering) and OSMesa (libOSMesa.so) both failed. "
        f"Install them with `sudo {APT_LINE}`, or set MUJOCO_GL (egl | osmesa | glfw) to a backend you know works."
    )
    return None


def preload_triton() -> bool:
    """Import ``torch._dynamo`` (which imports triton) if triton is installed; True if it did."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        return False
    import torch._dynamo  # noqa: F401  (loads triton's LLVM before Mesa's)

    return True


def prepare() -> str | None:
    """Run once before dm_control is first imported: the triton guard, then the backend choice."""
    preload_triton()
    return select_backend()


def ensure_rendering() -> None:
    """Raise a clear error (missing libraries, apt line) if no headless GL backend was found."""
    if _selection_error is not None and not os.environ.get("MUJOCO_GL"):
        raise RuntimeError(_selection_error)
