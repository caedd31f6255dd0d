//! The real remote side: the narrow interfaces of [`crate::store`], [`crate::cdn`] and
//! [`crate::backend`] and [`crate::init`] over the AWS SDK. Only this module and [`crate::aws`] (which
//! builds the clients at the edge) know the SDK's types.

pub mod cloudformation;
pub mod cloudfront;
pub mod lambda;
pub mod s3;
