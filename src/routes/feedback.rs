//! Ground truth: `POST /feedback` stores the true label of an audited prediction;
//! `GET /monitor/performance` joins the latest labels with the predictions in SQL and reports
//! accuracy, per-class precision and recall, and the confusion matrix. Both follow the access
//! rules of `/audit`: labels and accuracy are derived from users' data.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::Feedback;
use crate::error::{ApiError, escape_controls};
use crate::middleware::RequestStart;
use crate::routes::audit::authorize;
use crate::routes::monitor::model_window;
use crate::routes::predict::{check_content_type, read_body};
use crate::startup::AppState;

/// Largest feedback body.
const FEEDBACK_BODY_LIMIT: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    request_id: String,
    #[serde(default)]
    item: u32,
    label: String,
}

pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    start: RequestStart,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    check_content_type(&req)?;
    let body = read_body(&req, payload, FEEDBACK_BODY_LIMIT, state.body_timeout).await?;
    let fb: FeedbackBody = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(
            "invalid_body",
            format!("expected {{\"request_id\": \"...\", \"item\": 0, \"label\": \"...\"}}: {e}"),
        ),
        _ => ApiError::MalformedJson(format!("request body is not valid JSON: {e}")),
    })?;
    let item = i64::from(fb.item);
    let Some((model_name, _predicted)) = state
        .store
        .served_row(&fb.request_id, item)
        .await
        .map_err(|e| ApiError::store("the prediction could not be looked up", &e))?
    else {
        return Err(ApiError::NotFound(format!(
            "no answered prediction for request {:?} item {item}",
            escape_controls(&fb.request_id)
        )));
    };
    let model_name = model_name.unwrap_or_default();
    let model = state.models.get(&model_name).ok_or_else(|| {
        ApiError::invalid(
            "unknown_model",
            format!("model {model_name:?} of that prediction is no longer served"),
        )
    })?;
    if !model.artifact.class_names.contains(&fb.label) {
        return Err(ApiError::invalid(
            "unknown_label",
            format!(
                "label {:?} is not a class of model {}; its classes are {}",
                escape_controls(&fb.label),
                model.name(),
                model.artifact.class_names.join(", ")
            ),
        ));
    }
    let previous = state
        .store
        .insert_feedback(&Feedback {
            request_id: fb.request_id.clone(),
            item,
            label: fb.label.clone(),
            received_at: start.received_at,
            client_addr: req.peer_addr().map(|a| a.ip().to_string()),
        })
        .await
        .map_err(|e| ApiError::store("the feedback could not be stored", &e))?;
    Ok(HttpResponse::Created().json(json!({
        "request_id": fb.request_id,
        "item": item,
        "label": fb.label,
        "replaced": previous,
    })))
}

#[derive(Debug, Serialize)]
struct ClassScore {
    label: String,
    /// Rows truly of this class.
    support: i64,
    precision: Option<f64>,
    recall: Option<f64>,
}

/// `?model=&since=&until=`: performance over the predictions made in the range that have
/// feedback.
pub async fn performance(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let (model, filter) = model_window(&state, &params)?;
    let pairs = state
        .store
        .confusion(model.name(), &filter)
        .await
        .map_err(|e| ApiError::store("the labelled predictions could not be read", &e))?;
    let classes = &model.artifact.class_names;
    let k = classes.len();
    // matrix[true][predicted]
    let mut matrix = vec![vec![0i64; k]; k];
    let mut unmatched = 0i64;
    for (predicted, actual, n) in &pairs {
        match (
            classes.iter().position(|c| c == actual),
            classes.iter().position(|c| c == predicted),
        ) {
            (Some(t), Some(p)) => matrix[t][p] += n,
            _ => unmatched += n,
        }
    }
    let labelled: i64 = matrix.iter().flatten().sum();
    let correct: i64 = (0..k).map(|i| matrix[i][i]).sum();
    let per_class: Vec<ClassScore> = (0..k)
        .map(|c| {
            let support: i64 = matrix[c].iter().sum();
            let predicted: i64 = (0..k).map(|t| matrix[t][c]).sum();
            let ratio = |num: i64, den: i64| (den > 0).then(|| num as f64 / den as f64);
            ClassScore {
                label: classes[c].clone(),
                support,
                precision: ratio(matrix[c][c], predicted),
                recall: ratio(matrix[c][c], support),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "model": model.name(),
        "labelled": labelled,
        "unmatched_labels": unmatched,
        "accuracy": (labelled > 0).then(|| correct as f64 / labelled as f64),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": classes,
            "rows": "true label",
            "columns": "predicted label",
            "counts": matrix,
        },
    })))
}
