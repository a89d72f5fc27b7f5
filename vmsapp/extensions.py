"""Extension instances, unbound: the factory binds them to an app."""

from flask_smorest import Api
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from .errors import ErrorSchema


class Base(DeclarativeBase):
    # Stable constraint names, so migrations can refer to them on every database.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class DocumentedApi(Api):
    # Error responses are documented in the shape vmsapp really sends.
    ERROR_SCHEMA = ErrorSchema


db = SQLAlchemy(model_class=Base)
api = DocumentedApi()
sock = Sock()
