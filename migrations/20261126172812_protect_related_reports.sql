-- crime_events.related_reports is an array of report ids, which a FOREIGN KEY cannot check. The initial schema
-- refuses events naming unknown reports; this is the other half: a report that an event names cannot be deleted
-- (or have its id changed), with the same SQLSTATE a foreign key uses (23503, foreign_key_violation). The lookup
-- uses the GIN index idx_events_related_reports. Retention clean-up deletes old events before the reports they name,
-- so it is not affected.

-- migrate:up
CREATE FUNCTION luminar_protect_related_reports() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    referencing uuid;
BEGIN
    SELECT event_id INTO referencing
      FROM crime_events
     WHERE related_reports @> ARRAY[OLD.report_id]
     LIMIT 1;
    IF referencing IS NOT NULL THEN
        RAISE EXCEPTION 'report % is a related report of crime event %', OLD.report_id, referencing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'events_related_reports_exist',
                  TABLE = 'raw_incident_reports';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER raw_incident_reports_protect_related
    BEFORE DELETE ON raw_incident_reports
    FOR EACH ROW EXECUTE FUNCTION luminar_protect_related_reports();

CREATE TRIGGER raw_incident_reports_protect_related_id
    BEFORE UPDATE OF report_id ON raw_incident_reports
    FOR EACH ROW WHEN (OLD.report_id IS DISTINCT FROM NEW.report_id)
    EXECUTE FUNCTION luminar_protect_related_reports();

-- migrate:down
DROP TRIGGER IF EXISTS raw_incident_reports_protect_related_id ON raw_incident_reports;
DROP TRIGGER IF EXISTS raw_incident_reports_protect_related ON raw_incident_reports;
DROP FUNCTION IF EXISTS luminar_protect_related_reports();
