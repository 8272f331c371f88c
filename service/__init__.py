"""Run-time side: codec library (``service.codec``), ``lic`` CLI and the HTTP gateway. No torch import."""
