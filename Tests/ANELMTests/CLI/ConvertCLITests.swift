import ANELM
import Foundation
import XCTest

/// `anelm convert` and `anelm perplexity` as a user runs them: refusals are one `error:` line, and a write that
/// fails midway (a full disk, simulated by a file-size limit) leaves nothing under the output's name.
extension CLITests {
    var tinyLlama: String { Self.root.appendingPathComponent("Tests/Fixtures/models/tiny-llama").path }

    func scratchDirectory() throws -> URL {
        let dir = temporaryFile("cli-convert-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    func testConvertRefusesAnExistingOutputWithoutForce() throws {
        let dir = try scratchDirectory()
        let out = dir.appendingPathComponent("out.gguf").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: out))
        try assertCleanError(["convert", "--model", tinyLlama, "--output", out, "--type", "q8_0"], contains: "--force")
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "old")
        let r = try run(["convert", "--model", tinyLlama, "--output", out, "--type", "q8_0", "--force"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("100%"), r.stderr)  // the progress bar reached the end
        XCTAssertEqual(try GGUFFile(path: out).int("general.file_type"), 7)
        try assertCleanError(["convert", "--model", tinyLlama, "--output", dir.appendingPathComponent("x.gguf").path, "--type", "q3_k"], contains: "--type")
        try assertCleanError(["convert", "--model", dir.appendingPathComponent("missing").path, "--output", out + "2", "--type", "f16"], contains: "no model")
    }

    func testConvertOnAFullDiskLeavesNothing() throws {
        let dir = try scratchDirectory()
        for output in ["out.gguf", "folder"] {
            let out = dir.appendingPathComponent(output).path
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            // A 64-block file-size limit makes the write fail with EFBIG as a full disk fails with ENOSPC (SIGXFSZ ignored).
            process.arguments = ["-c", "trap '' XFSZ; ulimit -f 64; exec \"$0\" convert --model \"$1\" --output \"$2\" --type f32", try binary().path, tinyLlama, out]
            let err = Pipe()
            process.standardError = err
            process.standardOutput = Pipe()
            try process.run()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 1, stderr)
            XCTAssertTrue(stderr.contains("error: writing") && stderr.contains("File too large"), stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), output)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "left behind: \(output)")
        }
    }

    func testPerplexityRefusesBadInput() throws {
        let dir = try scratchDirectory()
        let short = dir.appendingPathComponent("short.txt")
        try Data("only a few words".utf8).write(to: short)
        try assertCleanError(["perplexity", "--model", tinyLlama, "--file", short.path, "--context", "64"], contains: "needs at least")
        try assertCleanError(["perplexity", "--model", tinyLlama, "--file", dir.appendingPathComponent("none.txt").path], contains: "cannot read")
        let text = dir.appendingPathComponent("text.txt")
        try Data(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 40).utf8).write(to: text)
        let r = try run(["perplexity", "--model", tinyLlama, "--file", text.path, "--context", "64", "--format", "json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\"perplexity\""), r.stdout)
    }
}
