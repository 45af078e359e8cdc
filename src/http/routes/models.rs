//! `GET /models` and `GET /models/{name}`: what is served.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::model::{Algorithm, Model, ModelRegistry, TrainingSummary};

#[derive(Serialize)]
struct ModelSummary<'a> {
    name: &'a str,
    version: &'a str,
    algorithm: Algorithm,
    created_at: &'a str,
    feature_names: &'a [String],
    class_names: &'a [String],
    training: &'a TrainingSummary,
    default: bool,
}

fn summary<'a>(model: &'a Model, models: &ModelRegistry) -> ModelSummary<'a> {
    let a = &model.artifact;
    ModelSummary {
        name: &a.name,
        version: &a.version,
        algorithm: a.algorithm,
        created_at: &a.created_at,
        feature_names: &a.feature_names,
        class_names: &a.class_names,
        training: &a.training,
        default: a.name == models.default_model().name(),
    }
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let current = state.models.current();
    let models: Vec<ModelSummary> = current
        .all()
        .into_iter()
        .map(|m| summary(m, &current))
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "models": models }))
}

pub async fn show(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let current = state.models.current();
    let model = current
        .get(&name)
        .ok_or_else(|| ApiError::UnknownModel(name.into_inner()))?;
    Ok(HttpResponse::Ok().json(summary(model, &current)))
}
