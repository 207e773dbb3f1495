//! gRPC server reflection, both versions: `grpc.reflection.v1` and `grpc.reflection.v1alpha`
//! (grpcurl 1.8 and Python's `grpcio-reflection` speak only v1alpha).
//!
//! One [`Index`] answers both; each version only converts its own message types to a
//! [`Query`] and an [`Answer`] back. Every request gets a response inside the stream, as the
//! protocol asks: an unknown symbol or file is an `ErrorResponse` (NOT_FOUND) and the stream
//! stays open for the client's next question (tonic-reflection ends the stream instead, which
//! clients report as a broken connection).

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use tokio_stream::Stream;

/// The services the replicas' descriptor sets describe, by symbol and file name.
#[derive(Debug, Default)]
pub struct Index {
    /// File name → the file's encoded `FileDescriptorProto`, and the files it imports.
    files: HashMap<String, (Vec<u8>, Vec<String>)>,
    /// Fully qualified symbol (package, message, enum, service, method) → its file.
    symbols: HashMap<String, String>,
    services: BTreeSet<String>,
}

/// A reflection request, whatever the version.
#[derive(Debug, PartialEq, Eq)]
pub enum Query {
    File(String),
    Symbol(String),
    Extension(String, i32),
    ExtensionNumbers(String),
    Services,
    /// A request with no message in it.
    Empty,
}

/// The answer to a [`Query`].
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A file first, then every file it imports, transitively (so a client needs no second
    /// round trip to resolve the types it names).
    Files(Vec<Vec<u8>>),
    ExtensionNumbers(String, Vec<i32>),
    Services(Vec<String>),
    Error(tonic::Code, String),
}

impl Index {
    /// Indexes encoded `FileDescriptorSet`s (compiled into the binary: an error is a build bug).
    pub fn new(sets: &[&[u8]]) -> Result<Index, prost::DecodeError> {
        let mut index = Index::default();
        for set in sets {
            for file in FileDescriptorSet::decode(*set)?.file {
                index.add(file);
            }
        }
        Ok(index)
    }

    fn add(&mut self, file: FileDescriptorProto) {
        let name = file.name().to_string();
        let package = file.package();
        let qualify = |n: &str| if package.is_empty() { n.to_string() } else { format!("{package}.{n}") };
        let mut symbols = Vec::new();
        for service in &file.service {
            let s = qualify(service.name());
            symbols.extend(service.method.iter().map(|m| format!("{s}.{}", m.name())));
            self.services.insert(s.clone());
            symbols.push(s);
        }
        symbols.extend(file.enum_type.iter().map(|e| qualify(e.name())));
        for message in &file.message_type {
            message_symbols(&qualify(message.name()), message, &mut symbols);
        }
        if !package.is_empty() {
            symbols.push(package.to_string());
        }
        for s in symbols {
            self.symbols.entry(s).or_insert_with(|| name.clone());
        }
        self.files.insert(name, (file.encode_to_vec(), file.dependency.clone()));
    }

    /// Answers one request.
    pub fn answer(&self, query: Query) -> Answer {
        match query {
            Query::File(name) => self.files_from(&name),
            Query::Symbol(symbol) => match self.symbols.get(symbol.trim_start_matches('.')) {
                Some(file) => self.files_from(file),
                None => Answer::Error(tonic::Code::NotFound, format!("symbol {symbol:?} not found")),
            },
            Query::Extension(of, number) => Answer::Error(
                tonic::Code::NotFound,
                format!("no extension {number} of {of:?} (no extensions are defined)"),
            ),
            Query::ExtensionNumbers(of) => match self.symbols.contains_key(of.trim_start_matches('.')) {
                true => Answer::ExtensionNumbers(of, Vec::new()),
                false => Answer::Error(tonic::Code::NotFound, format!("type {of:?} not found")),
            },
            Query::Services => Answer::Services(self.services.iter().cloned().collect()),
            Query::Empty => Answer::Error(tonic::Code::InvalidArgument, "the request names no question".into()),
        }
    }

    /// `name` and its imports, transitively, each once.
    fn files_from(&self, name: &str) -> Answer {
        if !self.files.contains_key(name) {
            return Answer::Error(tonic::Code::NotFound, format!("file {name:?} not found"));
        }
        let (mut out, mut seen, mut todo) = (Vec::new(), BTreeSet::new(), vec![name.to_string()]);
        while let Some(next) = todo.pop() {
            if let Some((bytes, deps)) = self.files.get(&next).filter(|_| seen.insert(next.clone())) {
                out.push(bytes.clone());
                todo.extend(deps.iter().cloned());
            }
        }
        Answer::Files(out)
    }
}

fn message_symbols(name: &str, message: &DescriptorProto, out: &mut Vec<String>) {
    out.extend(message.enum_type.iter().map(|e| format!("{name}.{}", e.name())));
    for nested in &message.nested_type {
        message_symbols(&format!("{name}.{}", nested.name()), nested, out);
    }
    out.push(name.to_string());
}

/// The index of everything a replica serves: its own API, health, and reflection itself.
pub fn replica_index() -> Result<Arc<Index>, prost::DecodeError> {
    Index::new(&[
        raftsched_api::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])
    .map(Arc::new)
}

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

/// One version's service: the same code over each version's (identical) message types.
macro_rules! reflection_version {
    ($module:ident, $($pb:tt)+) => {
        pub mod $module {
            use std::sync::Arc;

            use tokio_stream::StreamExt;
            use $($pb)+ as pb;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;

            use super::{Answer, Index, Query};

            pub struct Service(Arc<Index>);

            pub fn server(index: Arc<Index>) -> pb::server_reflection_server::ServerReflectionServer<Service> {
                pb::server_reflection_server::ServerReflectionServer::new(Service(index))
            }

            #[tonic::async_trait]
            impl pb::server_reflection_server::ServerReflection for Service {
                type ServerReflectionInfoStream = super::Answers<pb::ServerReflectionResponse>;

                async fn server_reflection_info(
                    &self,
                    req: tonic::Request<tonic::Streaming<pb::ServerReflectionRequest>>,
                ) -> Result<tonic::Response<Self::ServerReflectionInfoStream>, tonic::Status> {
                    let index = self.0.clone();
                    let answers = req.into_inner().map(move |r| r.map(|r| respond(&index, r)));
                    Ok(tonic::Response::new(Box::pin(answers)))
                }
            }

            fn respond(index: &Index, r: pb::ServerReflectionRequest) -> pb::ServerReflectionResponse {
                let query = match &r.message_request {
                    Some(MessageRequest::FileByFilename(f)) => Query::File(f.clone()),
                    Some(MessageRequest::FileContainingSymbol(s)) => Query::Symbol(s.clone()),
                    Some(MessageRequest::FileContainingExtension(e)) => {
                        Query::Extension(e.containing_type.clone(), e.extension_number)
                    }
                    Some(MessageRequest::AllExtensionNumbersOfType(t)) => Query::ExtensionNumbers(t.clone()),
                    Some(MessageRequest::ListServices(_)) => Query::Services,
                    None => Query::Empty,
                };
                let message = match index.answer(query) {
                    Answer::Files(file_descriptor_proto) => {
                        MessageResponse::FileDescriptorResponse(pb::FileDescriptorResponse { file_descriptor_proto })
                    }
                    Answer::ExtensionNumbers(base_type_name, extension_number) => {
                        MessageResponse::AllExtensionNumbersResponse(pb::ExtensionNumberResponse {
                            base_type_name,
                            extension_number,
                        })
                    }
                    Answer::Services(names) => MessageResponse::ListServicesResponse(pb::ListServiceResponse {
                        service: names.into_iter().map(|name| pb::ServiceResponse { name }).collect(),
                    }),
                    Answer::Error(code, error_message) => {
                        MessageResponse::ErrorResponse(pb::ErrorResponse { error_code: code as i32, error_message })
                    }
                };
                pb::ServerReflectionResponse {
                    valid_host: r.host.clone(),
                    original_request: Some(r),
                    message_response: Some(message),
                }
            }
        }
    };
}

reflection_version!(v1, tonic_reflection::pb::v1);
reflection_version!(v1alpha, tonic_reflection::pb::v1alpha);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_files_and_errors() {
        let index = replica_index().unwrap();
        let Answer::Services(services) = index.answer(Query::Services) else { panic!() };
        for s in [
            "raftsched.v1.Scheduler",
            "raftsched.v1.Worker",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(services.iter().any(|x| x == s), "{s} missing from {services:?}");
        }
        for symbol in ["raftsched.v1.Scheduler", ".raftsched.v1.Task", "raftsched.v1.Scheduler.Submit", "raftsched.v1"]
        {
            let Answer::Files(files) = index.answer(Query::Symbol(symbol.into())) else { panic!("{symbol}") };
            let first = FileDescriptorProto::decode(files[0].as_slice()).unwrap();
            assert_eq!(first.name(), "raftsched.proto");
        }
        assert!(matches!(
            index.answer(Query::Symbol("raftsched.v1.Nope".into())),
            Answer::Error(tonic::Code::NotFound, _)
        ));
        assert!(matches!(index.answer(Query::File("nope.proto".into())), Answer::Error(tonic::Code::NotFound, _)));
        assert_eq!(
            index.answer(Query::ExtensionNumbers("raftsched.v1.Task".into())),
            Answer::ExtensionNumbers("raftsched.v1.Task".into(), vec![])
        );
    }

    #[test]
    fn the_api_is_ready_for_other_languages() {
        let index = replica_index().unwrap();
        let Answer::Files(files) = index.answer(Query::File("raftsched.proto".into())) else { panic!() };
        let options = FileDescriptorProto::decode(files[0].as_slice()).unwrap().options.unwrap_or_default();
        assert!(options.go_package().contains(";raftschedv1"), "{:?}", options.go_package());
        assert!(!options.java_package().is_empty());
        assert!(!options.csharp_namespace().is_empty());
    }
}
