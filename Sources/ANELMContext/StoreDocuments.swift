import ANELM
import Foundation
import GRDB

/// One indexed document as the store lists it.
public struct StoredDocument: Sendable, Equatable {
    public var path: String
    public var bytes: Int
    public var modified: Double
    public var chunks: Int
}

extension ContextStore {
    /// Every document, by path.
    public func documents() throws -> [StoredDocument] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT d.path, d.bytes, d.modified, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id)
                    FROM documents d ORDER BY d.path
                    """
            ).map { row in
                StoredDocument(
                    path: try row.decode(String.self, atIndex: 0), bytes: try row.decode(Int.self, atIndex: 1),
                    modified: try row.decode(Double.self, atIndex: 2), chunks: try row.decode(Int.self, atIndex: 3))
            }
        }
    }

    /// Removes a document with its chunks and vectors; false when the store has no document at `path`.
    /// Logged answers keep their rows (a chunk gone since is left out of training).
    public func removeDocument(path: String) throws -> Bool {
        try write { db in
            try db.execute(sql: "DELETE FROM documents WHERE path = ?", arguments: [path])
            guard db.changesCount > 0 else { return false }
            try bumpGeneration(db)
            return true
        }
    }

    /// Chunks of logged answers that a person marked (used or not relevant): the part of the log a person wrote.
    public func feedbackCount() throws -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM answer_chunks WHERE feedback IS NOT NULL") ?? 0 }
    }
}
