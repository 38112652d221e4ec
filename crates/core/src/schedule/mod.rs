//! Schedules (functions of the step) and multistage plans.
