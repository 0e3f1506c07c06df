//! Web UIs and their JSON API: the HTTP server and HTML helpers shared by
//! the application UI (driver), the master's and workers' pages and the
//! history server.

pub mod app;
pub mod app_ui;
pub mod dag_svg;
pub mod event_log;
pub mod history;
pub mod html;
pub mod http;
pub mod status;
