"""The append-only tables refuse UPDATE and DELETE at the database itself."""

import psycopg
import pytest

pytestmark = pytest.mark.services


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'someone else'",
                                       "DELETE FROM audit_log"])
def test_audit_log_is_append_only(db, statement):
    db.execute("INSERT INTO audit_log (at, actor, action) VALUES (now(), 'admin', 'track.read')")
    with pytest.raises(psycopg.errors.RaiseException, match="audit_log is append-only"):
        db.execute(statement)
    db.rollback()
