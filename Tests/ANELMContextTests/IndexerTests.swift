import ANELM
import Foundation
import GRDB
import XCTest

import ANELMContext

final class IndexerTests: XCTestCase {
    func makeIndexer(_ store: ContextStore, _ embedder: HashingEmbedder = HashingEmbedder(), format: VectorFormat? = nil) throws -> Indexer {
        let indexer = try Indexer(store: store, embedder: embedder, embedderPath: "test", chunker: try Chunker(maxTokens: 40, overlapTokens: 8), vectorFormat: format)
        indexer.batchSize = 4
        return indexer
    }

    /// A corpus folder: a few notes, a markdown file, a source file, a binary file and an empty one.
    func makeCorpus(_ folder: URL) throws -> URL {
        let docs = folder.appendingPathComponent("docs")
        try write("The kettle boils water for tea.\n\nA teapot keeps it warm.", to: docs.appendingPathComponent("tea.txt"))
        try write("# Bikes\n\nA bicycle has two wheels.\n\n## Repair\n\nPatch the tube with glue.", to: docs.appendingPathComponent("bikes.md"))
        try write("func add(a: Int, b: Int) -> Int { a + b }\n", to: docs.appendingPathComponent("code/add.swift"))
        try Data([0x89, 0x50, 0x4E, 0x47, 0x00, 0x01, 0x02]).write(to: docs.appendingPathComponent("image.txt"))
        try write("", to: docs.appendingPathComponent("empty.md"))
        try write("ignored: not a text extension", to: docs.appendingPathComponent("data.bin"))
        try write("hidden", to: docs.appendingPathComponent(".git/config.txt"))
        return docs
    }

    func consistency(_ store: ContextStore) throws -> (chunks: Int, vectors: Int, fts: Int, orphans: Int) {
        try store.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM chunks") ?? -1,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM vectors") ?? -1,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM chunks_fts") ?? -1,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM chunks WHERE id NOT IN (SELECT chunk_id FROM vectors)") ?? -1
            )
        }
    }

    func testIndexesTextFilesSkipsBinaryAndCountsThem() throws {
        let folder = try temporaryFolder(self)
        let docs = try makeCorpus(folder)
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        let report = try makeIndexer(store).index([docs.path])
        XCTAssertEqual(report.indexed, 3)
        XCTAssertEqual(report.empty, 1)
        XCTAssertEqual(report.skippedBinary, 1)
        let counts = try store.counts()
        XCTAssertEqual(counts.documents, 4)  // the empty file is recorded (with no chunks) so it is not read again
        let c = try consistency(store)
        XCTAssertEqual(c.chunks, report.chunksAdded)
        XCTAssertEqual(c.vectors, c.chunks)
        XCTAssertEqual(c.fts, c.chunks)
        XCTAssertEqual(c.orphans, 0)
        let record = try XCTUnwrap(try store.embedderRecord())
        XCTAssertEqual(record.identifier, "test-hashing-64")
        XCTAssertEqual(record.vectorFormat, .f32)
    }

    func testReindexReadsOnlyChangedFilesAndRemovesDeletedOnes() throws {
        let folder = try temporaryFolder(self)
        let docs = try makeCorpus(folder)
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        let embedder = HashingEmbedder()
        _ = try makeIndexer(store, embedder).index([docs.path])
        let batchesAfterFirst = embedder.batches

        let again = try makeIndexer(store, embedder).index([docs.path])
        XCTAssertEqual(again.indexed, 0)
        XCTAssertEqual(again.unchanged, 4)
        XCTAssertEqual(embedder.batches, batchesAfterFirst, "nothing re-embedded")

        try write("The kettle whistles when the water boils.", to: docs.appendingPathComponent("tea.txt"))
        try FileManager.default.removeItem(at: docs.appendingPathComponent("bikes.md"))
        let changed = try makeIndexer(store, embedder).index([docs.path])
        XCTAssertEqual(changed.indexed, 1)
        XCTAssertEqual(changed.removed, 1)
        XCTAssertEqual(changed.unchanged, 2)
        let texts = try store.read { db in try String.fetchAll(db, sql: "SELECT text FROM chunks") }
        XCTAssertTrue(texts.contains("The kettle whistles when the water boils."))
        XCTAssertFalse(texts.contains { $0.contains("bicycle") })
        XCTAssertFalse(texts.contains { $0.contains("teapot") })
        let c = try consistency(store)
        XCTAssertEqual(c.fts, c.chunks)
        XCTAssertEqual(c.vectors, c.chunks)
        // The FTS index forgot the deleted text too.
        let stale = try store.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'bicycle'") }
        XCTAssertEqual(stale, 0)

        // A touched file with the same content is not re-embedded.
        let batches = embedder.batches
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(60)], ofItemAtPath: docs.appendingPathComponent("tea.txt").path)
        let touched = try makeIndexer(store, embedder).index([docs.path])
        XCTAssertEqual(touched.unchanged, 3)
        XCTAssertEqual(embedder.batches, batches)
    }

    func testIndexingAnotherFolderKeepsTheFirst() throws {
        let folder = try temporaryFolder(self)
        let docs = try makeCorpus(folder)
        try write("Other notes about rivers.", to: folder.appendingPathComponent("other/rivers.txt"))
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        _ = try makeIndexer(store).index([docs.path])
        let other = try makeIndexer(store).index([folder.appendingPathComponent("other").path])
        XCTAssertEqual(other.removed, 0)
        XCTAssertEqual(try store.counts().documents, 5)
    }

    func testAnInterruptedRunLeavesWholeFilesAndAReRunResumes() throws {
        let folder = try temporaryFolder(self)
        let docs = folder.appendingPathComponent("many")
        for i in 0..<6 { try write((0..<30).map { "file\(i) word\($0)" }.joined(separator: " "), to: docs.appendingPathComponent("f\(i).txt")) }
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        let failing = HashingEmbedder()
        failing.failAfterBatches = 5
        XCTAssertTrue(errorMessage { _ = try makeIndexer(store, failing).index([docs.path]) }.contains("embedder stopped"))
        // Each file is whole or absent: every stored document has all its chunks, vectors and FTS rows.
        let partial = try store.counts()
        XCTAssertGreaterThan(partial.documents, 0)
        XCTAssertLessThan(partial.documents, 6)
        let c = try consistency(store)
        XCTAssertEqual(c.vectors, c.chunks)
        XCTAssertEqual(c.fts, c.chunks)
        let full = try Chunker(maxTokens: 40, overlapTokens: 8).chunks(of: (0..<30).map { "file0 word\($0)" }.joined(separator: " "), markdown: false) {
            try failing.tokenCount(of: $0)
        }.count
        XCTAssertEqual(c.chunks, partial.documents * full)

        let resumed = try makeIndexer(store).index([docs.path])
        XCTAssertEqual(resumed.unchanged, partial.documents)
        XCTAssertEqual(resumed.indexed, 6 - partial.documents)
        XCTAssertEqual(try store.counts().documents, 6)
    }

    func testATransactionThatFailsLeavesTheStoreAsItWas() throws {
        let folder = try temporaryFolder(self)
        let docs = try makeCorpus(folder)
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        _ = try makeIndexer(store).index([docs.path])
        let before = try consistency(store)
        XCTAssertThrowsError(
            try store.write { db in
                try db.execute(sql: "DELETE FROM documents")
                throw ANELMError("interrupted")
            })
        XCTAssertEqual(try consistency(store).chunks, before.chunks)
        XCTAssertEqual(try store.counts().documents, 4)
    }

    func testAnotherEmbedderIsRefused() throws {
        let folder = try temporaryFolder(self)
        let docs = try makeCorpus(folder)
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        _ = try makeIndexer(store).index([docs.path])
        let message = errorMessage { _ = try makeIndexer(store, HashingEmbedder(dimensions: 32)) }
        XCTAssertTrue(message.contains("test-hashing-64"), message)
        XCTAssertTrue(errorMessage { _ = try makeIndexer(store, format: .int8) }.contains("--vectors int8"))
    }

    func testAMissingPathIsAnError() throws {
        let folder = try temporaryFolder(self)
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        XCTAssertTrue(errorMessage { _ = try makeIndexer(store).index([folder.appendingPathComponent("nope").path]) }.contains("no such file"))
    }

    func testSHA256() {
        XCTAssertEqual(SHA256.hex(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(
            SHA256.hex(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}
