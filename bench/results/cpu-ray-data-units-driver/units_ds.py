import gc, sys, time, psutil, ray, pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config={"task_events_report_interval_ms": 0})
proc = psutil.Process()
def mib():
    gc.collect(); m = proc.memory_full_info(); return round(m.uss / 2**20, 1), round(m.shared/2**20,1)
row = {"path": "/data/corpus/part-00017.parquet", "row_groups": [3], "offset": 384, "rows": 128, "unit_id": "a" * 32, "size": 1234567}
class Units(Datasource):
    def __init__(self, rows): self.rows = rows
    def estimate_inmemory_data_size(self): return None
    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        def task(r):
            return ReadTask(lambda: [pa.Table.from_pylist([r])], BlockMetadata(num_rows=1, size_bytes=None, input_files=None, exec_stats=None))
        return [task(r) for r in self.rows]
class Echo:
    def __call__(self, b): return pa.table({"n": [b.num_rows]})
mode, n = sys.argv[1], int(sys.argv[2])
rows = [dict(row, offset=i) for i in range(n)]
print("start", mib(), proc.memory_info().rss >> 20, flush=True)
t = time.time()
if mode == "items":
    ds = ray.data.from_items(rows, override_num_blocks=n)
else:
    ds = ray.data.read_datasource(Units(rows), override_num_blocks=n)
ds = ds.map_batches(Echo, batch_size=1, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=2, max_tasks_in_flight_per_actor=2), num_cpus=0.5)
peak = 0; k = 0
for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
    k += b.num_rows
    if k % 500 == 0: peak = max(peak, mib()[0])
print(mode, n, "rows", k, "after", mib(), "peak uss during", peak, "rss", proc.memory_info().rss >> 20, "s", round(time.time() - t, 1), flush=True)
