//! One TCP connection to one broker for admin requests: Kafka's size-prefixed framing,
//! request headers, and per-API version negotiation from the broker's ApiVersions answer.
//!
//! Messages are encoded and decoded by the `kafka-protocol` crate; this module only
//! frames them and picks the newest version both sides speak.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::KafkaError;

/// Largest response weir accepts on an admin connection (metadata of a big cluster
/// fits easily; anything larger is a protocol error, not a reason to allocate).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A connection that speaks the negotiated version of each admin API.
#[derive(Debug)]
pub(crate) struct BrokerConnection {
    address: String,
    stream: TcpStream,
    client_id: StrBytes,
    next_correlation_id: i32,
    /// Broker-supported `(min, max)` version per API key.
    broker_versions: BTreeMap<i16, (i16, i16)>,
    request_timeout: Duration,
}

impl BrokerConnection {
    /// Connects to `address` and asks which API versions the broker supports.
    pub(crate) async fn connect(
        address: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let stream = tokio::time::timeout(request_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| KafkaError::Timeout {
                api: "connect",
                broker: address.to_owned(),
                timeout: request_timeout,
            })?
            .map_err(|source| KafkaError::Io {
                api: "connect",
                broker: address.to_owned(),
                source,
            })?;
        stream.set_nodelay(true).map_err(|source| KafkaError::Io {
            api: "connect",
            broker: address.to_owned(),
            source,
        })?;
        let mut connection = Self {
            address: address.to_owned(),
            stream,
            client_id: StrBytes::from_string(client_id.to_owned()),
            next_correlation_id: 0,
            broker_versions: BTreeMap::new(),
            request_timeout,
        };
        // Version 0 is the one every broker answers, whatever it supports otherwise.
        let versions = connection
            .call_with_version("ApiVersions", &ApiVersionsRequest::default(), 0)
            .await?;
        if versions.error_code != 0 {
            return Err(KafkaError::Protocol {
                api: "ApiVersions",
                broker: address.to_owned(),
                message: format!("error code {}", versions.error_code),
            });
        }
        connection.broker_versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(connection)
    }

    /// The broker address this connection talks to.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` in the newest version both weir and the broker speak.
    pub(crate) async fn call<R: Request>(
        &mut self,
        api: &'static str,
        request: &R,
    ) -> Result<R::Response, KafkaError> {
        let version = self.negotiate::<R>(api)?;
        self.call_with_version(api, request, version).await
    }

    /// Sends the request `build` makes for the newest version both sides speak, and
    /// returns that version with the answer: for APIs whose fields differ by version.
    pub(crate) async fn call_versioned<R: Request>(
        &mut self,
        api: &'static str,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response), KafkaError> {
        let version = self.negotiate::<R>(api)?;
        let request = build(version);
        let response = self.call_with_version(api, &request, version).await?;
        Ok((version, response))
    }

    fn negotiate<R: Request>(&self, api: &'static str) -> Result<i16, KafkaError> {
        let ours = R::VERSIONS;
        let unsupported = |theirs: String| KafkaError::UnsupportedApi {
            api,
            broker: self.address.clone(),
            ours: format!("{}..={}", ours.min, ours.max),
            theirs,
        };
        let &(their_min, their_max) = self
            .broker_versions
            .get(&R::KEY)
            .ok_or_else(|| unsupported("none".to_owned()))?;
        let version = ours.max.min(their_max);
        if version < ours.min.max(their_min) {
            return Err(unsupported(format!("{their_min}..={their_max}")));
        }
        Ok(version)
    }

    async fn call_with_version<R: Request>(
        &mut self,
        api: &'static str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = self.encode_request(api, request, version, correlation_id)?;
        let timeout = self.request_timeout;
        let mut response = tokio::time::timeout(timeout, self.round_trip(api, &frame))
            .await
            .map_err(|_| KafkaError::Timeout {
                api,
                broker: self.address.clone(),
                timeout,
            })??;
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))
            .map_err(|e| self.protocol_error(api, e))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol_error(
                api,
                format!(
                    "response correlation id {} does not match request {correlation_id}",
                    header.correlation_id
                ),
            ));
        }
        R::Response::decode(&mut response, version).map_err(|e| self.protocol_error(api, e))
    }

    fn encode_request<R: Request>(
        &self,
        api: &'static str,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, KafkaError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::new();
        frame.put_i32(0); // length, filled in below
        header
            .encode(&mut frame, R::header_version(version))
            .map_err(|e| self.protocol_error(api, e))?;
        request
            .encode(&mut frame, version)
            .map_err(|e| self.protocol_error(api, e))?;
        let body_len = i32::try_from(frame.len() - 4)
            .map_err(|_| self.protocol_error(api, "request larger than 2 GiB"))?;
        frame[..4].copy_from_slice(&body_len.to_be_bytes());
        Ok(frame.freeze())
    }

    async fn round_trip(&mut self, api: &'static str, frame: &[u8]) -> Result<Bytes, KafkaError> {
        let io_error = |source| KafkaError::Io {
            api,
            broker: self.address.clone(),
            source,
        };
        self.stream.write_all(frame).await.map_err(io_error)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.map_err(io_error)?;
        let len = usize::try_from(i32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if len > MAX_RESPONSE_BYTES {
            return Err(self.protocol_error(api, format!("response of {len} bytes is too large")));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.map_err(io_error)?;
        Ok(Bytes::from(body))
    }

    fn protocol_error(&self, api: &'static str, message: impl ToString) -> KafkaError {
        KafkaError::Protocol {
            api,
            broker: self.address.clone(),
            message: message.to_string(),
        }
    }
}
