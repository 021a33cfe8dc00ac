"""A steady stream of event appends that prints each acknowledgement (killed with -9 by the test)."""
import random
import sys
from pathlib import Path

from solo.events.log import EventLog

log = EventLog(Path(sys.argv[1]), roll_rows=int(sys.argv[2]))
rng = random.Random(int(sys.argv[3]))
print("READY", log.last_id, flush=True)
while True:
    groups = [[{"tenant": f"t{rng.randrange(3)}", "type": "load.tick", "subject": "s", "payload": {"n": i}}
               for i in range(rng.randrange(1, 40))] for _ in range(rng.randrange(1, 4))]
    for first, last in log.append_many(groups):
        print("ACK", first, last, flush=True)
