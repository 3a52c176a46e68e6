DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE job_events;
DROP TABLE jobs;
