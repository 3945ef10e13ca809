//! Adapter selection: the one place where in-memory and Redis differ.

use socketioxide::adapter::LocalAdapter;

use crate::app::{self, App, BuildError};
use crate::config::Config;

/// The adapter chosen from the configuration, already initialised.
pub enum Built {
    Memory(App<LocalAdapter>),
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("REDIS_URL: scale-out through Redis is not in this release yet; unset REDIS_URL to run a single instance")]
    RedisNotAvailable,
}

pub async fn build(config: &Config) -> Result<Built, ScaleError> {
    match &config.redis_url {
        None => Ok(Built::Memory(app::build::<LocalAdapter>(config, ())?)),
        Some(_) => Err(ScaleError::RedisNotAvailable),
    }
}
