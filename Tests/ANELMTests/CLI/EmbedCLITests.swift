import ANELM
import Foundation
import XCTest

/// `anelm embed` on the tiny BERT fixture: the JSON shape, the text format, and bad input as one-line errors.
extension CLITests {
    static var tinyBert: String { root.appendingPathComponent("Tests/Fixtures/embeddings/tiny-bert").path }

    func testEmbedPrintsTheDocumentedJSON() throws {
        let r = try run(["embed", "--model", Self.tinyBert, "--text", "a man is eating food.", "--text", "hello", "--format", "json", "--precision", "f32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["model"] as? String, "tiny-bert")
        XCTAssertEqual(object["dimensions"] as? Int, 64)
        let vectors = try XCTUnwrap(object["embeddings"] as? [[Double]])
        XCTAssertEqual(vectors.map(\.count), [64, 64])
        let library = try EmbedderLoader.load(URL(fileURLWithPath: Self.tinyBert), precision: .f32).embed(["a man is eating food.", "hello"])
        for (printed, expected) in zip(vectors, library) {
            XCTAssertLessThan(zip(printed, expected).map { abs(Float($0) - $1) }.max() ?? 1, 1e-6)
        }
    }

    func testEmbedFileAndTruncationWarning() throws {
        let file = temporaryFile("texts.txt")
        try Data("first line\r\nsecond line\n\(String(repeating: "the cat sat on the mat. ", count: 20))\n".utf8).write(to: file)
        let r = try run(["embed", "--model", Self.tinyBert, "--file", file.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 3)
        XCTAssertTrue(r.stderr.contains("warning: text 3 has"), r.stderr)
    }

    func testEmbedBadInputGivesOneLineErrors() throws {
        try assertCleanError(["embed", "--model", Self.tinyBert, "--text", ""], contains: "error: --text 1 is empty")
        try assertCleanError(["embed", "--model", Self.tinyBert], contains: "error: nothing to embed")
        let file = temporaryFile("gap.txt")
        try Data("one\n\nthree\n".utf8).write(to: file)
        try assertCleanError(["embed", "--model", Self.tinyBert, "--file", file.path], contains: "gap.txt:2 is an empty line")
        try assertCleanError(["embed", "--model", "/nonexistent/embedder", "--text", "hi"], contains: "error: no embedding model at")
        try assertCleanError(["embed", "--model", root().path, "--text", "hi"], contains: "error: ")
        try assertCleanError(["embed", "--model", Self.tinyBert, "--text", "hi", "--batch-size", "0"], contains: "--batch-size must be")
    }

    /// `export-coreml` of an embedder folder writes its embedding functions, refuses the language-model options, and
    /// `info --ane --strict` lints the embedder.
    func testExportCoreMLOfAnEmbedder() throws {
        let folder = temporaryFile("export-embedder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let output = folder.appendingPathComponent("E.mlpackage").path
        let r = try run(["export-coreml", "--model", Self.tinyBert, "--output", output, "--lengths", "16,64"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("sequence lengths 16, 64, mean pooling, L2-normalized"), r.stderr)
        XCTAssertEqual(try ANEPackageInfo.read(package: output).functions, ["embed_16", "embed_64"])
        let lint = try run(["info", "--ane", "--strict", Self.tinyBert])
        XCTAssertEqual(lint.status, 0, lint.stdout + lint.stderr)
        XCTAssertTrue(lint.stdout.contains("ANE embed_64 graph (fp16, 64 tokens per call)"), lint.stdout)
        let other = folder.appendingPathComponent("F.mlpackage").path
        try assertCleanError(
            ["export-coreml", "--model", Self.tinyBert, "--output", other, "--context", "64"], contains: "--context applies to language models")
        try assertCleanError(["export-coreml", "--model", Self.tinyBert, "--output", other, "--lengths", "16,x"], contains: "--lengths takes positive integers")
        try assertCleanError(["export-coreml", "--model", root().path, "--output", other, "--lengths", "16"], contains: "--lengths applies to embedding models")
        let missingStore = folder.appendingPathComponent("none.sqlite").path
        try assertCleanError(["export-coreml", "--relevance", "--store", missingStore, "--output", other], contains: "error: ")
        XCTAssertFalse(FileManager.default.fileExists(atPath: other))
    }

    private func root() -> URL { Self.root.appendingPathComponent("Tests/Fixtures/models/tiny-llama") }
}
