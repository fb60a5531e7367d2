-- Issue 16: failed sign-ins are audited (action 'auth.failed', subject = the username as typed,
-- params.address = the client address) and throttle later attempts per username and per
-- address, across API processes and restarts. Successful sign-ins are audited too
-- ('auth.sign_in'): a success ends the run of failures of that username.
CREATE INDEX audit_log_sign_in_subject ON audit_log (subject, at)
    WHERE action IN ('auth.failed', 'auth.sign_in');
CREATE INDEX audit_log_sign_in_address ON audit_log ((params ->> 'address'), at)
    WHERE action = 'auth.failed';
