import ANELM
import ANELMContext
import Foundation
import Hummingbird

/// The store's documents and relevance model over HTTP, for the page at `/` (and any client): upload a file to be
/// indexed exactly as `anelm index` indexes it (`ContextEngine.index`, the same `Indexer`), list and remove
/// documents, the store's status and `anelm context train`. Uploads are kept as files in `<store>.uploads/`, so
/// that the store's paths point at what was indexed.
extension Endpoints {
    static let documentPaths: Set<String> = ["/v1/documents", "/v1/context/status", "/v1/context/train"]

    func registerDocuments(_ router: Router<Context>) {
        router.get("/v1/documents") { _, _ in try await listDocuments() }
        router.post("/v1/documents") { request, _ in try await uploadDocument(request) }
        router.delete("/v1/documents") { request, _ in try await removeDocument(request) }
        router.get("/v1/context/status") { _, _ in try await contextStatus() }
        router.post("/v1/context/train") { request, _ in try await trainRelevance(request) }
    }

    /// Index, remove and train one at a time (each is a write transaction or several; readers are not held up).
    private static let storeWrites = DispatchQueue(label: "anelm.store-writes")

    private func servedStore() throws -> ContextEngine {
        guard let context else {
            throw APIError(.notFound, "this server has no context store; start it with --store", code: "no_context_store")
        }
        return context
    }

    /// Runs blocking store work off the concurrency pool; a store error becomes a 500 naming it.
    private func onStoreQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Self.storeWrites.async {
                continuation.resume(
                    with: Result {
                        do { return try work() } catch let e as ANELMError {
                            throw APIError(.internalServerError, e.message, type: "server_error", code: "store_error")
                        }
                    })
            }
        }
    }

    private func uploadsFolder(_ engine: ContextEngine) -> URL {
        URL(fileURLWithPath: engine.store.path + ".uploads").standardizedFileURL
    }

    private func parseObject(_ body: Data, allowEmpty: Bool = false) throws -> JSONObject {
        if allowEmpty, body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return [:] }
        return try JSONObject.requestBody(body)
    }

    func listDocuments() async throws -> Response {
        let engine = try servedStore()
        let uploads = uploadsFolder(engine).path + "/"
        let documents = try storeCall { try engine.store.documents() }
        let data: [JSONValue] = documents.map { d in
            [
                "path": .string(d.path), "bytes": .int(d.bytes), "modified": .double(d.modified), "chunks": .int(d.chunks),
                "uploaded": .bool(d.path.hasPrefix(uploads)),
                "name": .string(d.path.hasPrefix(uploads) ? String(d.path.dropFirst(uploads.count)) : d.path),
            ]
        }
        return Self.json(.ok, ["object": "list", "data": .array(data)])
    }

    /// `POST /v1/documents` `{"name": "folder/file.md", "content": "text"}`: one file, written to the uploads folder
    /// under `name` (replacing an earlier upload of that name) and indexed.
    func uploadDocument(_ request: Request) async throws -> Response {
        let engine = try servedStore()
        let object = try parseObject(try await readBody(request))
        for key in object.keys where !["name", "content"].contains(key) {
            throw APIError.invalid("unknown field '\(key)'; a document takes name and content", param: key)
        }
        guard let name = object["name"]?.stringValue else { throw APIError.wrongType("name", "a string (the file's path in its folder)") }
        guard let content = object["content"]?.stringValue else { throw APIError.wrongType("content", "a string (the file's text)") }
        let parts = try Self.uploadPathParts(name)
        guard !content.contains("\0") else { throw APIError.invalid("'content' holds a NUL character; only text files are indexed", param: "content") }
        let uploads = uploadsFolder(engine)
        let destination = parts.reduce(uploads) { $0.appendingPathComponent($1) }
        let report = try await onStoreQueue { () throws -> IndexReport in
            let fm = FileManager.default
            // A name may not pass through an uploaded file nor replace a folder of uploads.
            var isFolder: ObjCBool = false
            var prefix = uploads
            for (i, part) in parts.enumerated() {
                prefix.appendPathComponent(part)
                guard fm.fileExists(atPath: prefix.path, isDirectory: &isFolder) else { break }
                guard isFolder.boolValue == (i < parts.count - 1) else {
                    let kind = isFolder.boolValue ? "folder" : "file"
                    throw APIError.invalid("'name' \(name) collides with the uploaded \(kind) \(parts[0...i].joined(separator: "/"))", param: "name")
                }
            }
            try fm.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            // Uploads are written one at a time (this queue): the earlier version of the name goes, the new one is
            // staged and moved into place, and the indexer replaces the document (or skips it when unchanged).
            if fm.fileExists(atPath: destination.path) { try fm.removeItem(at: destination) }
            let staged = try StagedOutput(destination: destination.path)
            try Data(content.utf8).write(to: URL(fileURLWithPath: staged.staging))
            try staged.commit()
            return try engine.index([destination.path])
        }
        let counts = try storeCall { try engine.store.counts() }
        return Self.json(
            .ok,
            [
                "path": .string(destination.path), "name": .string(parts.joined(separator: "/")), "chunks": .int(report.chunksAdded),
                "indexed": .bool(report.indexed + report.empty > 0), "unchanged": .bool(report.unchanged > 0),
                "store": ["documents": .int(counts.documents), "chunks": .int(counts.chunks)],
            ])
    }

    /// A relative path of plain names: no empty, `.`/`..` or hidden components (a folder walk skips hidden entries).
    static func uploadPathParts(_ name: String) throws -> [String] {
        let parts = name.split(separator: "/").map(String.init)
        guard !parts.isEmpty, parts.count <= 32, name.utf8.count <= 1024, !name.hasPrefix("/") else {
            throw APIError.invalid("'name' must be a relative path of at most 32 names and 1024 bytes", param: "name")
        }
        for part in parts {
            guard !part.hasPrefix("."), !part.contains("\\"), !part.contains("\0"), part.utf8.count <= 255,
                !part.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
            else {
                throw APIError.invalid("'name' has the part '\(part)': names may not start with '.' or hold '\\' or control characters", param: "name")
            }
        }
        return parts
    }

    /// `DELETE /v1/documents?path=P`: the document leaves the store (its uploaded file too).
    func removeDocument(_ request: Request) async throws -> Response {
        let engine = try servedStore()
        guard let path = request.uri.queryParameters["path"].map(String.init), !path.isEmpty else {
            throw APIError.invalid("name the document with ?path= (its path as /v1/documents lists it)", param: "path")
        }
        let uploads = uploadsFolder(engine).path + "/"
        let removed = try await onStoreQueue { () throws -> Bool in
            guard try engine.store.removeDocument(path: path) else { return false }
            if path.hasPrefix(uploads), !path.contains("/../") { try? FileManager.default.removeItem(atPath: path) }
            return true
        }
        guard removed else { throw APIError(.notFound, "the store has no document '\(path)'", code: "document_not_found", param: "path") }
        let counts = try storeCall { try engine.store.counts() }
        return Self.json(.ok, ["path": .string(path), "deleted": true, "store": ["documents": .int(counts.documents), "chunks": .int(counts.chunks)]])
    }

    /// `GET /v1/context/status`: what `anelm context status` prints, and the feedback log's size.
    func contextStatus() async throws -> Response {
        let engine = try servedStore()
        let status = try storeCall { () throws -> JSONValue in
            let counts = try engine.store.counts()
            let versions: [JSONValue] = try engine.store.relevanceVersions().map { v in
                ["version": .int(v.version), "created": .double(v.created.timeIntervalSince1970), "accepted": .bool(v.accepted), "metrics": v.metrics]
            }
            let record = engine.retriever.record
            return [
                "store": .string(URL(fileURLWithPath: engine.store.path).lastPathComponent),
                "embedder": ["identifier": .string(record.identifier), "dimensions": .int(record.dimensions)],
                "documents": .int(counts.documents), "chunks": .int(counts.chunks),
                "answers": .int(counts.answers), "feedback": .int(try engine.store.feedbackCount()),
                "relevance_version": try engine.retriever.relevance.current().map { .int($0.version) } ?? .null,
                "versions": .array(versions),
            ]
        }
        return Self.json(.ok, status)
    }

    /// `POST /v1/context/train` `{"seed", "epochs", "hidden"}` (all optional): `anelm context train`. The new version
    /// is used from the next request on when it ranks the held-out answers better.
    func trainRelevance(_ request: Request) async throws -> Response {
        let engine = try servedStore()
        let object = try parseObject(try await readBody(request), allowEmpty: true)
        var options = TrainingOptions()
        for (key, value) in object {
            guard let n = value.integerValue else { throw APIError.wrongType(key, "an integer") }
            switch key {
            case "seed":
                guard n >= 0 else { throw APIError.invalid("'seed' must be 0 or more", param: "seed") }
                options.seed = UInt64(n)
            case "epochs":
                guard (1...10_000).contains(n) else { throw APIError.invalid("'epochs' must be in 1…10000", param: "epochs") }
                options.epochs = n
            case "hidden":
                guard (1...1024).contains(n) else { throw APIError.invalid("'hidden' must be in 1…1024", param: "hidden") }
                options.hidden = n
            default: throw APIError.invalid("unknown field '\(key)'; training takes seed, epochs and hidden", param: key)
            }
        }
        let chosen = options
        let report = try await onStoreQueue { () throws -> TrainingReport in
            let index = try VectorIndex(store: engine.store, record: engine.retriever.record)
            do { return try RelevanceTrainer.train(store: engine.store, index: index, options: chosen) } catch let e as ANELMError {
                // Too few answers with feedback, mostly: the log is not ready yet, the request was fine.
                throw APIError(.conflict, e.message, code: "training_refused")
            }
        }
        func metrics(_ m: RankingMetrics) -> JSONValue { ["ndcg@5": .double(m.ndcg5), "recall@5": .double(m.recall5)] }
        return Self.json(
            .ok,
            [
                "version": .int(report.version), "accepted": .bool(report.accepted), "compared_with": report.comparedWith.map { .int($0) } ?? "retrieval",
                "training_answers": .int(report.trainingAnswers), "held_out_answers": .int(report.heldOutAnswers), "examples": .int(report.examples),
                "before": metrics(report.before), "after": metrics(report.after),
            ])
    }

    /// A store read; its failure (a locked or damaged store) is the server's, said as such.
    private func storeCall<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ANELMError {
            throw APIError(.internalServerError, e.message, type: "server_error", code: "store_error")
        }
    }
}
