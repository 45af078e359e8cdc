//! `GET /models` and `GET /models/{name}`: what is served.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::model::{Algorithm, Model, TrainingSummary};

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

fn summary<'a>(model: &'a Model, state: &AppState) -> ModelSummary<'a> {
    let a = &model.artifact;
    ModelSummary {
        name: &a.name,
        version: &a.version,
        algorithm: a.algorithm,
        created_at: &a.created_at,
        feature_names: &a.feature_names,
        class_names: &a.class_names,
        training: &a.training,
        default: a.name == state.models.default_model().name(),
    }
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let models: Vec<ModelSummary> = state
        .models
        .all()
        .into_iter()
        .map(|m| summary(m, &state))
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "models": models }))
}

pub async fn show(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let model = state
        .models
        .get(&name)
        .ok_or_else(|| ApiError::UnknownModel(name.into_inner()))?;
    Ok(HttpResponse::Ok().json(summary(model, &state)))
}
