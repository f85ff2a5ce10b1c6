import Foundation
import XCTest

/// Writers leave nothing behind when interrupted and never remove what they did not create.
extension CLITests {
    func stagingFolders(in folder: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".partial") && $0.contains(".anelm-") }
    }

    func testInterruptedExportLeavesNothingAndKeepsUserFiles() throws {
        guard let model = defaultModelPath() else { throw XCTSkip("default model not installed") }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-interrupt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // A folder with the name older versions staged into, holding a user's file: it must survive.
        let userFolder = folder.appendingPathComponent("M.mlpackage.partial")
        try FileManager.default.createDirectory(at: userFolder, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: userFolder.appendingPathComponent("notes.txt"))

        for signal in [SIGINT, SIGTERM] {
            let process = Process()
            process.executableURL = try binary()
            process.arguments = ["export-coreml", "--model", model, "--output", folder.appendingPathComponent("M.mlpackage").path, "--context", "64"]
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(120)
            while stagingFolders(in: folder).isEmpty && process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            XCTAssertTrue(process.isRunning, "the export finished before it could be interrupted")
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 128 + signal)
            XCTAssertEqual(stagingFolders(in: folder), [], "staging left after signal \(signal)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("M.mlpackage").path))
        }
        XCTAssertEqual(try String(contentsOf: userFolder.appendingPathComponent("notes.txt"), encoding: .utf8), "mine")
    }

    func testConcurrentExportsToOneOutput() throws {
        let tiny = ModelFixture.directory.appendingPathComponent("tiny-llama").path
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-concurrent-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let output = folder.appendingPathComponent("T.mlpackage").path
        let processes = try (0..<2).map { _ -> (Process, Pipe) in
            let process = Process()
            let err = Pipe()
            process.executableURL = try binary()
            process.arguments = ["export-coreml", "--model", tiny, "--output", output, "--context", "32", "--prefill-block", "8"]
            process.standardError = err
            try process.run()
            return (process, err)
        }
        var statuses: [Int32] = []
        var messages: [String] = []
        for (process, err) in processes {
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            statuses.append(process.terminationStatus)
            messages.append(text)
        }
        XCTAssertTrue(statuses.contains(0), "\(messages)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: output))
        for (status, text) in zip(statuses, messages) where status != 0 {
            XCTAssertEqual(status, 1)
            XCTAssertTrue(text.contains("error: ") && (text.contains("already exists") || text.contains("appeared while")), text)
            XCTAssertFalse(text.contains("NSCocoaErrorDomain"), text)
        }
        XCTAssertEqual(stagingFolders(in: folder), [])
    }
}
