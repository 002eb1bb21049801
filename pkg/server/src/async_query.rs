//! `querier.v1.AsyncQuerierService/SelectMergeProfileAsync` (profilecli
//! `query merge --async`). A merge is answered within the call that starts
//! it: the answer is `ASYNC_QUERY_STATUS_SUCCESS` with the profile (or
//! `FAILURE` with the reason), which the protocol allows and clients accept
//! without polling. As no merge is left running, a poll (`request_id` set)
//! names no known merge and is answered `not_found`.

use std::sync::Arc;

use ember_proto::{
    error::Code,
    querier::v1::{
        AsyncQueryStatus, SelectMergeProfileAsyncRequest, SelectMergeProfileAsyncResponse,
        async_querier_service_server::AsyncQuerierService, querier_service_server::QuerierService,
    },
};
use ember_querier::Querier;
use tonic::{Request, Response, Status};
use ulid::Ulid;

/// The asynchronous merge over a querier.
#[derive(Debug, Clone)]
pub struct AsyncMerge(pub Arc<Querier>);

#[tonic::async_trait]
impl AsyncQuerierService for AsyncMerge {
    async fn select_merge_profile_async(
        &self,
        request: Request<SelectMergeProfileAsyncRequest>,
    ) -> Result<Response<SelectMergeProfileAsyncResponse>, Status> {
        let (metadata, extensions, req) = request.into_parts();
        if !req.request_id.is_empty() {
            return Err(Code::NotFound.status(format!(
                "no merge {:?} is running: merges are answered when they are started",
                req.request_id
            )));
        }
        let merge = req
            .request
            .ok_or_else(|| Code::BadRequest.status("a merge needs a request"))?;
        let request_id = Ulid::new().to_string();
        let inner = Request::from_parts(metadata, extensions, merge);
        Ok(Response::new(
            match self.0.select_merge_profile(inner).await {
                Ok(profile) => SelectMergeProfileAsyncResponse {
                    request_id,
                    status: AsyncQueryStatus::Success as i32,
                    error_message: String::new(),
                    profile: Some(profile.into_inner()),
                },
                // A request the querier refuses is the caller's to fix: say so at once.
                Err(status) if Code::of(&status) == Code::BadRequest => return Err(status),
                Err(status) => SelectMergeProfileAsyncResponse {
                    request_id,
                    status: AsyncQueryStatus::Failure as i32,
                    error_message: status.message().to_owned(),
                    profile: None,
                },
            },
        ))
    }
}
