//! The uploader's behaviour against real local servers, as one test binary (one link,
//! which matters on two cores): the sync engine on moto, s3s-fs and s3rver; stages
//! (promote, rollback, previews, invalidations, locks) on moto's S3 and CloudFront;
//! the full stack with moto's Lambda, API Gateway and IAM. The engine's failure cases
//! without servers are unit tests next to the code (`src/engine_tests.rs`).

mod fullstack;
mod stages;
mod sync;
