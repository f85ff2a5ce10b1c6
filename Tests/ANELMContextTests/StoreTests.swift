import ANELM
import Foundation
import GRDB
import XCTest

import ANELMContext

final class StoreTests: XCTestCase {
    func testNewStoreHasTheCurrentSchemaAndReopens() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("s.sqlite").path
        _ = try ContextStore(path: path)
        let store = try ContextStore(path: path)
        let applied = try store.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        XCTAssertEqual(applied, ContextStore.schemaVersions)
        let tables = try store.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
        for table in ["documents", "chunks", "vectors", "chunks_fts", "answers", "answer_chunks", "relevance_models", "settings"] {
            XCTAssertTrue(tables.contains(table), table)
        }
        XCTAssertEqual(try store.counts(), ContextStore.Counts(documents: 0, chunks: 0, answers: 0, relevanceVersions: 0))
    }

    func testFTS5IsAvailable() throws {
        let folder = try temporaryFolder(self)
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        let options = try store.read { db in try String.fetchAll(db, sql: "PRAGMA compile_options") }
        XCTAssertTrue(options.contains("ENABLE_FTS5"), "SQLite without FTS5: \(options)")
    }

    func testStoreFromANewerSchemaIsRefused() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("s.sqlite").path
        let store = try ContextStore(path: path)
        try store.write { db in try db.execute(sql: "INSERT INTO grdb_migrations(identifier) VALUES ('v2')") }
        let message = errorMessage { _ = try ContextStore(path: path) }
        XCTAssertTrue(message.contains("newer anelm") && message.contains("v2"), message)
    }

    func testCorruptFileIsAClearError() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("s.sqlite").path
        try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }).write(to: URL(fileURLWithPath: path))
        let message = errorMessage { _ = try ContextStore(path: path) }
        XCTAssertTrue(message.contains("not an anelm store or is corrupt"), message)
        // Nothing was written over it.
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)).count, 4096)
    }

    func testForeignSQLiteDatabaseIsRefused() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("other.sqlite").path
        let other = try DatabaseQueue(path: path)
        try other.write { db in try db.execute(sql: "CREATE TABLE people(name TEXT)") }
        let message = errorMessage { _ = try ContextStore(path: path) }
        XCTAssertTrue(message.contains("not an anelm store"), message)
    }

    func testMissingStoreForSearchSaysHowToMakeOne() throws {
        let folder = try temporaryFolder(self)
        let message = errorMessage { _ = try ContextStore(path: folder.appendingPathComponent("none.sqlite").path, create: false) }
        XCTAssertTrue(message.contains("anelm index"), message)
    }

    func testLockedStoreIsAClearError() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("s.sqlite").path
        let store = try ContextStore(path: path)
        // Another connection holds the write lock while this one tries to write.
        let holder = try DatabaseQueue(path: path)
        let locked = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let thread = Thread {
            try? holder.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN EXCLUSIVE")
                locked.signal()
                release.wait()
                try db.execute(sql: "ROLLBACK")
            }
        }
        thread.start()
        locked.wait()
        let quick = try? ContextStore(path: path, busyTimeout: 0.1)
        let message = errorMessage {
            let s = try quick ?? ContextStore(path: path, busyTimeout: 0.1)
            _ = try s.bindEmbedder(HashingEmbedder(), path: "test", vectorFormat: nil)
        }
        release.signal()
        XCTAssertTrue(message.contains("locked"), message)
        _ = store
    }
}
