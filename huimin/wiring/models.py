"""Import every package's tables so that ``Base.metadata`` is complete.

Alembic and test set-up import this module; application code imports the
owning package's models directly.
"""

from admin import jobs as admin_jobs  # noqa: F401
from admin import models as admin_models  # noqa: F401
from bot import models as bot_models  # noqa: F401
from content import models as content_models  # noqa: F401
from huimin.casework import models as casework_models  # noqa: F401
from huimin.db import Base
from huimin.registry import models as registry_models  # noqa: F401
from notify import models as notify_models  # noqa: F401
from notify import wechat as notify_wechat  # noqa: F401

metadata = Base.metadata
