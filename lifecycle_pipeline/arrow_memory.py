"""Arrow allocates from the same heap as pandas and NumPy.

The data path alternates between Arrow and pandas: the CSV or Parquet is read into Arrow
buffers, handed to pandas, and each artifact is written through Arrow again. With Arrow's
own allocator (mimalloc in the wheels), memory Arrow had freed stayed in its pool, where the
next stage's NumPy arrays could not reuse it: at 1M rows the lifecycle run's peak was 975 MiB
above its start with mimalloc and 811 MiB with the system allocator (bench figure 3 at 1M
measures this). A deployment that sets ``ARROW_DEFAULT_MEMORY_POOL`` keeps its choice.
"""

from __future__ import annotations

import os


def use_system_allocator() -> None:
    """Make the system allocator Arrow's default pool, unless the environment chose one."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
