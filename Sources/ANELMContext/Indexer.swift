import ANELM
import Foundation
import GRDB

/// What one `index` run did.
public struct IndexReport: Sendable, Equatable {
    public var indexed = 0
    public var unchanged = 0
    public var removed = 0
    public var empty = 0
    public var skippedBinary = 0
    public var skippedUnreadable = 0
    public var chunksAdded = 0
    public init() {}
}

/// Where an `index` run is, for a progress bar.
public struct IndexProgress: Sendable {
    public var filesDone: Int
    public var filesTotal: Int
    public var chunksEmbedded: Int
    public var currentPath: String
}

/// Walks files and folders into a store: text files are chunked, embedded in batches and written one file per
/// transaction, so an interrupted run leaves every file either fully indexed or as it was, and a rerun resumes
/// (files whose content hash is stored are skipped). Files that vanished from the walked folders are removed;
/// binary files are skipped and counted.
public final class Indexer {
    public let store: ContextStore
    public let embedder: any TextEmbedder
    public let record: EmbedderRecord
    public let chunker: Chunker
    public var batchSize = 32

    /// Extensions read when walking a folder (a file named on the command line is read whatever its name).
    public static let textExtensions: Set<String> = [
        "txt", "md", "markdown", "rst", "html", "htm", "xml", "json", "yaml", "yml", "toml", "csv", "tex",
        "swift", "c", "h", "cc", "cpp", "hpp", "m", "mm", "py", "js", "ts", "go", "rs", "java", "kt", "rb", "sh", "sql", "css",
    ]

    public init(store: ContextStore, embedder: any TextEmbedder, embedderPath: String, chunker: Chunker, vectorFormat: VectorFormat? = nil) throws {
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        record = try store.bindEmbedder(embedder, path: embedderPath, vectorFormat: vectorFormat)
    }

    struct Found {
        var path: String
        var root: String
    }

    /// Indexes `paths` (files and folders); `progress` is called after each file.
    public func index(_ paths: [String], progress: (IndexProgress) -> Void = { _ in }) throws -> IndexReport {
        var report = IndexReport()
        let (files, roots) = try walk(paths)
        let stored = try storedDocuments()
        var seen = Set<String>()
        var chunksEmbedded = 0
        for (i, path) in files.enumerated() {
            defer { progress(IndexProgress(filesDone: i + 1, filesTotal: files.count, chunksEmbedded: chunksEmbedded, currentPath: path)) }
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                let data = FileManager.default.contents(atPath: path)
            else {
                report.skippedUnreadable += 1
                continue
            }
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            if let old = stored[path], old.bytes == data.count, old.modified == modified {
                seen.insert(path)
                report.unchanged += 1
                continue
            }
            guard let text = Self.text(of: data) else {
                report.skippedBinary += 1
                continue
            }
            seen.insert(path)
            let hash = SHA256.hex(data)
            if let old = stored[path], old.hash == hash {
                try store.write { db in try db.execute(sql: "UPDATE documents SET modified = ? WHERE path = ?", arguments: [modified, path]) }
                report.unchanged += 1
                continue
            }
            let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
            let chunks = try chunker.chunks(of: text, markdown: ext == "md" || ext == "markdown") { try embedder.tokenCount(of: $0) }
            var vectors: [[Float]] = []
            for start in stride(from: 0, to: chunks.count, by: batchSize) {
                let batch = chunks[start..<min(chunks.count, start + batchSize)].map(\.text)
                vectors += try embed(batch)
                chunksEmbedded += batch.count
            }
            try store.replaceDocument(path: path, hash: hash, modified: modified, bytes: data.count, chunks: chunks, vectors: vectors, format: record.vectorFormat)
            if chunks.isEmpty { report.empty += 1 } else { report.indexed += 1 }
            report.chunksAdded += chunks.count
        }
        // Files that were under a walked root and are gone (or now binary or unreadable) leave the store.
        let gone = stored.keys.filter { path in !seen.contains(path) && roots.contains { Self.path(path, isUnder: $0) } }
        if !gone.isEmpty {
            try store.write { db in
                for path in gone { try db.execute(sql: "DELETE FROM documents WHERE path = ?", arguments: [path]) }
                try store.bumpGeneration(db)
            }
            report.removed = gone.count
        }
        return report
    }

    /// Embeds texts and checks what came back: one finite vector of the right size per text, made unit length so
    /// that a dot product is the cosine.
    public func embed(_ texts: [String]) throws -> [[Float]] {
        try Self.embed(texts, with: embedder)
    }

    static func embed(_ texts: [String], with embedder: any TextEmbedder) throws -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        let vectors = try embedder.embed(texts)
        guard vectors.count == texts.count else {
            throw ANELMError("the embedder returned \(vectors.count) vectors for \(texts.count) texts")
        }
        return try vectors.map { vector in
            guard vector.count == embedder.dimensions, vector.allSatisfy(\.isFinite) else {
                throw ANELMError("the embedder returned a vector of \(vector.count) values (expected \(embedder.dimensions) finite ones)")
            }
            return normalized(vector)
        }
    }

    private func storedDocuments() throws -> [String: (hash: String, modified: Double, bytes: Int)] {
        try store.read { db in
            var out: [String: (hash: String, modified: Double, bytes: Int)] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT path, content_hash, modified, bytes FROM documents") {
                out[try row.decode(String.self, atIndex: 0)] = (
                    try row.decode(String.self, atIndex: 1), try row.decode(Double.self, atIndex: 2), try row.decode(Int.self, atIndex: 3)
                )
            }
            return out
        }
    }

    /// The files to read (sorted, absolute, standardized) and the roots they came from. Hidden files and folders
    /// (`.git`, `.build`) are not walked into; in folders, only files with a text extension are read.
    func walk(_ paths: [String]) throws -> (files: [String], roots: [String]) {
        let fm = FileManager.default
        var files = Set<String>()
        var roots: [String] = []
        for given in paths {
            let root = URL(fileURLWithPath: given).standardizedFileURL.path
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: root, isDirectory: &isDirectory) else { throw ANELMError("\(given): no such file or folder") }
            roots.append(root)
            guard isDirectory.boolValue else {
                files.insert(root)
                continue
            }
            guard let walker = fm.enumerator(at: URL(fileURLWithPath: root), includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles])
            else { throw ANELMError("\(given): cannot read the folder") }
            for case let url as URL in walker {
                guard (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true,
                    Self.textExtensions.contains(url.pathExtension.lowercased())
                else { continue }
                files.insert(url.standardizedFileURL.path)
            }
        }
        return (files.sorted(), roots)
    }

    static func path(_ path: String, isUnder root: String) -> Bool {
        path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    /// The file's text, or nil for a binary file: a NUL byte, or bytes that are not UTF-8.
    static func text(of data: Data) -> String? {
        if data.contains(0) { return nil }
        return String(data: data, encoding: .utf8)
    }
}

/// `v / |v|` (a zero vector stays zero).
public func normalized(_ v: [Float]) -> [Float] {
    let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
    return norm > 0 ? v.map { $0 / norm } : v
}
