"""What every use case needs, built once by the composition root and passed in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ctaprod.core.jobdesc import SubmissionLimits
from ctaprod.core.settings import Settings
from ctaprod.db.auth import AuthDB
from ctaprod.db.catalog import CatalogDB
from ctaprod.db.datasets import DatasetDB
from ctaprod.db.engine import Database
from ctaprod.db.events import EventDB
from ctaprod.db.jobs import JobDB
from ctaprod.db.metadata import MetadataDB
from ctaprod.db.pilots import PilotDB
from ctaprod.db.productions import ProductionDB
from ctaprod.db.requests import RequestDB
from ctaprod.db.sandboxes import SandboxDB
from ctaprod.db.sites import SiteDB
from ctaprod.db.storage import StorageDB
from ctaprod.db.taskqueues import TaskQueueDB
from ctaprod.db.transformations import TransformationDB
from ctaprod.db.types import utcnow
from ctaprod.resources.storage import StorageElement, create_storage_element


@dataclass
class Context:
    """Database handle, settings and DB classes; one per process."""

    db: Database
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    jobs: JobDB = field(init=False)
    queues: TaskQueueDB = field(init=False)
    pilots: PilotDB = field(init=False)
    sandboxes: SandboxDB = field(init=False)
    auth: AuthDB = field(init=False)
    sites: SiteDB = field(init=False)
    catalog: CatalogDB = field(init=False)
    meta: MetadataDB = field(init=False)
    datasets: DatasetDB = field(init=False)
    se_status: StorageDB = field(init=False)
    requests: RequestDB = field(init=False)
    trans: TransformationDB = field(init=False)
    prods: ProductionDB = field(init=False)
    events: EventDB = field(init=False)
    _storage: dict[str, StorageElement] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        locking = not self.db.is_sqlite
        self.jobs = JobDB(for_update=locking)
        self.queues = TaskQueueDB(skip_locked=self.db.supports_skip_locked)
        self.pilots = PilotDB(for_update=locking)
        self.sandboxes = SandboxDB()
        self.auth = AuthDB()
        self.sites = SiteDB()
        self.catalog = CatalogDB()
        self.meta = MetadataDB()
        self.datasets = DatasetDB()
        self.se_status = StorageDB()
        self.requests = RequestDB()
        self.trans = TransformationDB(for_update=locking)
        self.prods = ProductionDB(for_update=locking)
        self.events = EventDB(for_update=locking)

    @property
    def limits(self) -> SubmissionLimits:
        j = self.settings.jobs
        return SubmissionLimits(
            min_cpu_time=j.min_cpu_time,
            max_cpu_time=j.max_cpu_time,
            max_parametric_jobs=j.max_parametric_jobs,
            max_input_data=j.max_input_data,
            max_jobs_per_call=j.max_jobs_per_call,
        )

    def storage(self, name: str) -> StorageElement:
        """The storage element called ``name`` (plugins are built once and reused)."""
        with self._lock:
            se = self._storage.get(name)
            if se is None:
                se = create_storage_element(name, self.settings.storage_element(name))
                self._storage[name] = se
            return se
