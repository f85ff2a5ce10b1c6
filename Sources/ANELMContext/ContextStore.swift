import ANELM
import Foundation
import GRDB

/// The context engine's one SQLite file: documents, their chunks and vectors, an FTS5 index over the chunks,
/// the log of grounded answers with the feedback on them, and the relevance model's versions. Every change is a
/// transaction, so an interrupted writer leaves the store as it was before that change; the schema is versioned
/// by migrations, and a store written by a newer anelm is refused rather than guessed at.
public final class ContextStore: @unchecked Sendable {
    public let path: String
    let database: DatabaseQueue

    /// The migrations this build knows, oldest first. A store that has applied one not in this list is newer.
    public static let schemaVersions = ["v1"]

    /// The default store: `<cache>/context/store.sqlite` (`ANELM_CACHE` moves the cache).
    public static var defaultPath: String {
        DefaultModel.cacheDirectory.appendingPathComponent("context").appendingPathComponent("store.sqlite").path
    }

    /// Opens (creating if needed) the store at `path`. `busyTimeout`: how long to wait for another process that
    /// holds the write lock before saying the store is locked.
    public init(path: String, busyTimeout: TimeInterval = 5, create: Bool = true) throws {
        self.path = path
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard !isDirectory.boolValue else { throw ANELMError("\(path) is a folder; --store names the store's file") }
        } else {
            guard create else { throw ANELMError("no store at \(path); make one with anelm index --store \(path) PATH…") }
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
            do {
                try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            } catch {
                throw ANELMError("cannot create the folder \(folder.path) for the store: \(error.localizedDescription)")
            }
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(busyTimeout)
        configuration.foreignKeysEnabled = true
        configuration.label = "anelm-context"
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            try Self.migrate(database, path: path)
        } catch let error as ANELMError {
            throw error
        } catch {
            throw Self.explain(error, path: path)
        }
    }

    /// Brings the schema up to date, refusing a file that is not an anelm store or is from a newer anelm.
    private static func migrate(_ database: DatabaseQueue, path: String) throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in try Schema.v1(db) }
        try database.read { db in
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'")
            if !tables.isEmpty && !tables.contains("grdb_migrations") {
                throw ANELMError("\(path) is an SQLite database but not an anelm store (it has other tables); choose another --store")
            }
            if tables.contains("grdb_migrations") {
                let applied = try migrator.appliedIdentifiers(db)
                let unknown = applied.subtracting(schemaVersions)
                if !unknown.isEmpty {
                    throw ANELMError(
                        "\(path) was written by a newer anelm (schema \(unknown.sorted().joined(separator: ", "))); this anelm reads schema up to \(schemaVersions.last ?? "v1"): update anelm"
                    )
                }
            }
        }
        try migrator.migrate(database)
    }

    /// A database error as one line that says what to do.
    static func explain(_ error: Error, path: String) -> ANELMError {
        if let error = error as? ANELMError { return error }
        guard let error = error as? DatabaseError else { return ANELMError("store \(path): \(error)") }
        switch error.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return ANELMError("the store \(path) is locked by another process (an index or train still running?); try again when it ends")
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return ANELMError("\(path) is not an anelm store or is corrupt (\(error.message ?? "SQLite: \(error.resultCode)")); remove it and index again")
        case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM:
            return ANELMError("cannot open the store \(path) for writing: \(error.message ?? "\(error.resultCode)")")
        case .SQLITE_FULL:
            return ANELMError("the disk holding \(path) is full; nothing of the last change was written")
        default:
            return ANELMError("store \(path): \(error.message ?? "SQLite error \(error.resultCode)")")
        }
    }

    /// A read, its database errors said as `explain` says them.
    public func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try database.read(body) } catch { throw Self.explain(error, path: path) }
    }

    /// One transaction: all of `body` is written, or (on an error or an interruption) none of it.
    public func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try database.write(body) } catch { throw Self.explain(error, path: path) }
    }

    // MARK: - Settings the store remembers

    /// A value of the store's `settings` table (which embedder built it, the vector format, chunk sizes).
    public func setting(_ key: String) throws -> String? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key]) }
    }

    func setSetting(_ key: String, _ value: String, _ db: Database) throws {
        try db.execute(sql: "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", arguments: [key, value])
    }

    /// The embedder that built the store, as recorded by the first `index`, or nil for an empty store.
    public func embedderRecord() throws -> EmbedderRecord? {
        guard let identifier = try setting("embedder"), let location = try setting("embedder_path"),
            let dims = try setting("dimensions").flatMap(Int.init), let format = try setting("vector_format").flatMap(VectorFormat.init)
        else { return nil }
        return EmbedderRecord(identifier: identifier, path: location, dimensions: dims, vectorFormat: format)
    }

    /// Records the embedder on first use; afterwards refuses another one (vectors of two models do not compare).
    public func bindEmbedder(_ embedder: any TextEmbedder, path location: String, vectorFormat: VectorFormat?) throws -> EmbedderRecord {
        if let record = try embedderRecord() {
            guard record.identifier == embedder.identifier, record.dimensions == embedder.dimensions else {
                throw ANELMError(
                    "the store \(path) was built with the embedder \(quotedName(record.identifier)) (\(record.dimensions) dimensions), not \(quotedName(embedder.identifier)); index into a new store or omit --model"
                )
            }
            if let vectorFormat, vectorFormat != record.vectorFormat {
                throw ANELMError("the store \(path) keeps \(record.vectorFormat.rawValue) vectors; --vectors \(vectorFormat.rawValue) needs a new store")
            }
            return record
        }
        guard embedder.dimensions > 0 else { throw ANELMError("the embedder \(quotedName(embedder.identifier)) reports \(embedder.dimensions) dimensions") }
        let format = vectorFormat ?? .f32
        if format == .int8 && embedder.dimensions % VectorFormat.int8BlockSize != 0 {
            throw ANELMError("int8 vectors need dimensions in multiples of \(VectorFormat.int8BlockSize); the embedder has \(embedder.dimensions)")
        }
        let record = EmbedderRecord(identifier: embedder.identifier, path: location, dimensions: embedder.dimensions, vectorFormat: format)
        try write { db in
            try setSetting("embedder", record.identifier, db)
            try setSetting("embedder_path", record.path, db)
            try setSetting("dimensions", String(record.dimensions), db)
            try setSetting("vector_format", format.rawValue, db)
        }
        return record
    }

    // MARK: - Counts and chunks

    public struct Counts: Sendable, Equatable {
        public var documents: Int
        public var chunks: Int
        public var answers: Int
        public var relevanceVersions: Int

        public init(documents: Int, chunks: Int, answers: Int, relevanceVersions: Int) {
            (self.documents, self.chunks, self.answers, self.relevanceVersions) = (documents, chunks, answers, relevanceVersions)
        }
    }

    public func counts() throws -> Counts {
        try read { db in
            Counts(
                documents: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM documents") ?? 0,
                chunks: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM chunks") ?? 0,
                answers: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM answers") ?? 0,
                relevanceVersions: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM relevance_models") ?? 0)
        }
    }

    /// Chunks by id (missing ids are left out), in the order asked.
    public func chunks(_ ids: [Int64]) throws -> [StoredChunk] {
        guard !ids.isEmpty else { return [] }
        let found = try read { db -> [Int64: StoredChunk] in
            var found: [Int64: StoredChunk] = [:]
            // In slices: SQLite limits the number of bound parameters.
            for start in stride(from: 0, to: ids.count, by: 500) {
                let slice = Array(ids[start..<min(ids.count, start + 500)])
                let marks = Array(repeating: "?", count: slice.count).joined(separator: ",")
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT c.id, d.path, c.start_byte, c.end_byte, c.heading_path, c.text, c.token_count
                        FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN (\(marks))
                        """, arguments: StatementArguments(slice))
                for row in rows {
                    let chunk = StoredChunk(
                        id: try row.decode(Int64.self, atIndex: 0), source: try row.decode(String.self, atIndex: 1),
                        startByte: try row.decode(Int.self, atIndex: 2), endByte: try row.decode(Int.self, atIndex: 3),
                        headingPath: try row.decode(String.self, atIndex: 4), text: try row.decode(String.self, atIndex: 5),
                        tokenCount: try row.decode(Int.self, atIndex: 6))
                    found[chunk.id] = chunk
                }
            }
            return found
        }
        return ids.compactMap { found[$0] }
    }

    /// Writes a document with its chunks and their unit vectors in one transaction, replacing what was stored for
    /// `path`: all of it is written, or (on an error or an interruption) the store keeps the old version.
    public func replaceDocument(path: String, hash: String, modified: Double, bytes: Int, chunks: [Chunk], vectors: [[Float]], format: VectorFormat) throws {
        guard chunks.count == vectors.count else { throw ANELMError("\(chunks.count) chunks but \(vectors.count) vectors for \(path)") }
        try write { db in
            try db.execute(sql: "DELETE FROM documents WHERE path = ?", arguments: [path])
            try db.execute(
                sql: "INSERT INTO documents(path, content_hash, modified, bytes) VALUES (?, ?, ?, ?)", arguments: [path, hash, modified, bytes])
            let document = db.lastInsertedRowID
            let insertChunk = try db.cachedStatement(
                sql: "INSERT INTO chunks(document_id, ordinal, start_byte, end_byte, heading_path, text, token_count) VALUES (?, ?, ?, ?, ?, ?, ?)")
            let insertVector = try db.cachedStatement(sql: "INSERT INTO vectors(chunk_id, data) VALUES (?, ?)")
            for (ordinal, (chunk, vector)) in zip(chunks, vectors).enumerated() {
                try insertChunk.execute(arguments: [document, ordinal, chunk.startByte, chunk.endByte, chunk.headingPath, chunk.text, chunk.tokenCount])
                try insertVector.execute(arguments: [db.lastInsertedRowID, format.encode(vector)])
            }
            try bumpGeneration(db)
        }
    }

    /// Changes whenever chunks are added or removed (SQLite's count of changes to the vectors table is not
    /// kept across connections, so the store keeps its own generation number).
    public func generation() throws -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT value FROM settings WHERE key = 'generation'").flatMap { Int($0) } ?? 0 }
    }

    func bumpGeneration(_ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO settings(key, value) VALUES ('generation', '1')
                ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)
                """)
    }
}

/// Which embedder built a store and how its vectors are kept.
public struct EmbedderRecord: Sendable, Equatable {
    public var identifier: String
    /// Where the embedder was loaded from, so later commands open the same one.
    public var path: String
    public var dimensions: Int
    public var vectorFormat: VectorFormat
}

/// How vectors are kept: f32, or int8 in blocks of 32 with one f16 scale each (GGUF's Q8_0 layout, which the
/// matrix kernels multiply directly: a quarter of the memory traffic per query, cosine within ~1%).
public enum VectorFormat: String, Sendable, CaseIterable {
    case f32, int8
    static let int8BlockSize = 32
}

/// A chunk as stored: its text, where it is in its source, the headings above it.
public struct StoredChunk: Sendable, Equatable {
    public var id: Int64
    public var source: String
    public var startByte: Int
    public var endByte: Int
    public var headingPath: String
    public var text: String
    public var tokenCount: Int
}

/// A name read from a store or a model, safe to print.
func quotedName(_ text: String) -> String { "\"" + ANELMError.printable(text, limit: 80) + "\"" }

/// The schema, one function per version. A new version is a new function appended to `schemaVersions`;
/// an existing one is never edited (stores in the field have applied it).
enum Schema {
    static func v1(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE settings(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                CREATE TABLE documents(
                    id INTEGER PRIMARY KEY,
                    path TEXT NOT NULL UNIQUE,
                    content_hash TEXT NOT NULL,
                    modified REAL NOT NULL,
                    bytes INTEGER NOT NULL);
                CREATE TABLE chunks(
                    id INTEGER PRIMARY KEY,
                    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
                    ordinal INTEGER NOT NULL,
                    start_byte INTEGER NOT NULL,
                    end_byte INTEGER NOT NULL,
                    heading_path TEXT NOT NULL,
                    text TEXT NOT NULL,
                    token_count INTEGER NOT NULL);
                CREATE INDEX chunks_by_document ON chunks(document_id);
                CREATE TABLE vectors(
                    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
                    data BLOB NOT NULL);
                CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id');
                CREATE VIRTUAL TABLE chunks_fts_vocabulary USING fts5vocab(chunks_fts, 'row');
                CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
                    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
                END;
                CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
                    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
                END;
                CREATE TABLE answers(
                    id INTEGER PRIMARY KEY,
                    created REAL NOT NULL,
                    query TEXT NOT NULL,
                    query_vector BLOB NOT NULL,
                    response TEXT NOT NULL,
                    model TEXT NOT NULL,
                    relevance_version INTEGER);
                CREATE TABLE answer_chunks(
                    answer_id INTEGER NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
                    chunk_id INTEGER NOT NULL,
                    rank INTEGER NOT NULL,
                    dense_score REAL NOT NULL,
                    dense_rank INTEGER,
                    bm25_score REAL,
                    bm25_rank INTEGER,
                    fused_score REAL NOT NULL,
                    score REAL NOT NULL,
                    token_count INTEGER NOT NULL,
                    citation INTEGER,
                    used INTEGER,
                    feedback INTEGER,
                    PRIMARY KEY(answer_id, chunk_id));
                CREATE TABLE relevance_models(
                    version INTEGER PRIMARY KEY,
                    created REAL NOT NULL,
                    accepted INTEGER NOT NULL,
                    metrics TEXT NOT NULL,
                    weights BLOB NOT NULL);
                """)
    }
}
