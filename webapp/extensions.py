"""Extension objects, created unbound here and bound to the app in the factory."""

from typing import TYPE_CHECKING

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
# db.Model is a class built at runtime from Base's body, so a type checker cannot subclass the attribute;
# it sees the typed declarative Base instead. Models subclass `Model`.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# ProxyFix has already replaced remote_addr with the one hop we trust, so spoofed headers cannot
# move a client into another bucket.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
