DROP INDEX audit_events_action;
DROP INDEX audit_events_actor;
DROP TABLE login_attempts;
DROP TABLE sessions;
DROP TABLE users;
