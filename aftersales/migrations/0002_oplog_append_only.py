"""The operation log is append-only, enforced by the database itself.

UPDATE and DELETE always raise. TRUNCATE raises too, unless the database has the setting
``aftersales.allow_log_truncate = on`` — which only the test database gets (its fixtures are
emptied by TRUNCATE between transactional tests); production databases never set it.
"""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION aftersales_oplog_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND coalesce(current_setting('aftersales.allow_log_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'aftersales_operationlog is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER aftersales_oplog_no_update_delete
    BEFORE UPDATE OR DELETE ON aftersales_operationlog
    FOR EACH ROW EXECUTE FUNCTION aftersales_oplog_refuse_change();

CREATE TRIGGER aftersales_oplog_no_truncate
    BEFORE TRUNCATE ON aftersales_operationlog
    FOR EACH STATEMENT EXECUTE FUNCTION aftersales_oplog_refuse_change();
"""

REVERSE = """
DROP TRIGGER IF EXISTS aftersales_oplog_no_truncate ON aftersales_operationlog;
DROP TRIGGER IF EXISTS aftersales_oplog_no_update_delete ON aftersales_operationlog;
DROP FUNCTION IF EXISTS aftersales_oplog_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("aftersales", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
