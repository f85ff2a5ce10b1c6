import Foundation
import XCTest

/// Number options and the warnings for values the machine or the model cannot honour.
extension CLITests {
    func testNegativeNumbersReachTheRangeCheck() throws {
        guard let model = defaultModelPath() else { throw XCTSkip("default model not installed") }
        // "-1" is the option's value, not a flag: the error names the option and the rule, not "Missing value".
        try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--temperature", "-1"], contains: "temperature")
        try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--max-tokens", "-1"], contains: "--max-tokens must be")
        try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--threads", "-2"], contains: "threads")
    }

    func testThreadsAndContextBeyondWhatExistsAreWarnedAndCapped() throws {
        guard let model = defaultModelPath() else { throw XCTSkip("default model not installed") }
        let r = try run(["generate", "--model", model, "--prompt", "hi", "--max-tokens", "1", "--threads", "1000", "--context", "100000"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        XCTAssertTrue(r.stderr.contains("warning: --threads 1000 is more than the \(cores) cores this machine has; using \(cores)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: --context 100000 is longer than the 8192 positions the model was trained for"), r.stderr)
    }

    func testCraftedFileCannotWriteToTheTerminal() throws {
        var w = GGUFWriter()
        w.metadata = [("general.architecture", .string("llama"))]
        w.tensors = [(String(repeating: "\u{1B}[2J", count: 50_000), [1, 1, 1, 1, 1], 0, floatBytes([0]))]
        let url = temporaryFile("crafted-terminal.gguf")
        try w.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let r = try run(["info", url.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr)
        XCTAssertFalse(r.stderr.unicodeScalars.contains { $0.value == 0x1B }, "escape bytes reached stderr")
        XCTAssertLessThan(r.stderr.utf8.count, 2_000)
    }
}
