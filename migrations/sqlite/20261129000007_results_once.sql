-- One result per customer per run: a run resumed after a crash records each member once,
-- without holding every recorded customer in memory.
DROP INDEX export_results_run;
CREATE UNIQUE INDEX export_results_member ON export_results (run_id, customer_id);
