//! `GET /models` and `GET /models/{name}`: what is served.

use actix_web::get;
use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::state::AppState;
use crate::model::registry::ModelRegistry;
use crate::model::{Algorithm, Model, Task, TrainingSummary};

/// A model served.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelSummary<'a> {
    #[schema(value_type = String)]
    name: &'a str,
    /// The artifact's version (a hash of its content unless set at training).
    #[schema(value_type = String)]
    version: &'a str,
    algorithm: Algorithm,
    /// `classification` (answers a class) or `regression` (answers a number).
    task: Task,
    #[schema(value_type = String)]
    created_at: &'a str,
    #[schema(value_type = Vec<String>)]
    feature_names: &'a [String],
    /// A classifier's classes (empty for a regressor).
    #[schema(value_type = Vec<String>)]
    class_names: &'a [String],
    #[schema(value_type = TrainingSummary)]
    training: &'a TrainingSummary,
    /// The model `/predict` uses.
    default: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelList<'a> {
    models: Vec<ModelSummary<'a>>,
}

fn summary<'a>(model: &'a Model, models: &ModelRegistry) -> ModelSummary<'a> {
    let a = &model.artifact;
    ModelSummary {
        name: &a.name,
        version: &a.version,
        algorithm: a.algorithm,
        task: a.task(),
        created_at: &a.created_at,
        feature_names: &a.feature_names,
        class_names: &a.class_names,
        training: &a.training,
        default: a.name == models.default_model().name(),
    }
}

/// Every model served.
#[utoipa::path(get, path = "/models", tag = "models", operation_id = "list_models",
    responses((status = 200, description = "The models served", body = ModelList)))]
#[get("/models", name = "/models")]
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let current = state.models.current();
    let models: Vec<ModelSummary> = current
        .all()
        .into_iter()
        .map(|m| summary(m, &current))
        .collect();
    HttpResponse::Ok().json(ModelList { models })
}

/// One model.
#[utoipa::path(get, path = "/models/{name}", tag = "models",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "The model", body = ModelSummary),
        (status = 404, description = "No such model (`unknown_model`)", body = ErrorBody),
    ))]
#[get("/models/{name}", name = "/models/{name}")]
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
