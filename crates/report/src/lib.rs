//! Reading finished runs, statistics over seeds, plots and reports.
//!
//! Nothing here trains: everything works on run folders in the layout of
//! [`stagewise_core::record`] (docs/run-format.md), so `stagewise compare` and
//! `stagewise report` read the same files any script can.
//!
//! - [`runs`]: one finished run folder, loaded;
//! - [`comparison`]: a finished grid analysed: the lr chosen per method, tests, equal time;
//! - [`stats`]: summaries over seeds, confidence intervals, paired tests, Holm's correction;
//! - [`plots`]: charts as PNG and SVG;
//! - [`render`]: a report document written as Markdown and as self-contained HTML;
//! - [`runs_report`]: the report on finished runs (`stagewise report`): charts and a summary table.

pub mod comparison;
pub mod confusion;
pub mod plots;
pub mod render;
pub mod runs;
pub mod runs_report;
pub mod stats;
