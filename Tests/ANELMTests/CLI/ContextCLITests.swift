import Foundation
import XCTest

/// The context commands' errors and the retrieval benchmark, through the built binary.
extension CLITests {
    func testContextCommandsOnMissingOrBrokenStoresFailCleanly() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-cli-context-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = folder.appendingPathComponent("none.sqlite").path
        try assertCleanError(["search", "--store", missing, "--query", "tea"], contains: "no store at")
        try assertCleanError(["feedback", "--store", missing, "--answer", "1"], contains: "no store at")
        try assertCleanError(["context", "train", "--store", missing], contains: "no store at")
        let corrupt = folder.appendingPathComponent("corrupt.sqlite")
        try Data(repeating: 0x5A, count: 8192).write(to: corrupt)
        try assertCleanError(["search", "--store", corrupt.path, "--query", "tea"], contains: "not an anelm store or is corrupt")
        try assertCleanError(["index", "--store", corrupt.path, folder.path], contains: "not an anelm store or is corrupt")
        try assertCleanError(["search", "--store", folder.path, "--query", "tea"], contains: "is a folder")
    }

    func testContextBenchRunsOnASmallSyntheticStore() throws {
        let r = try run(["context", "bench", "--chunks", "300", "--dimensions", "64", "--queries", "3", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("| 300 | 64 f32 |"), r.stdout)
    }
}
