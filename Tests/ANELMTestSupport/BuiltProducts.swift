import ANELM
import Foundation

// Shared by the test targets that run what a user runs: the built binary, the installed default embedder.

/// The repository's root folder (this file is Tests/ANELMTestSupport/BuiltProducts.swift).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `anelm` binary SwiftPM built under .build/release or .build/debug (the newer when both exist), else nil.
/// scripts/test builds the release one (`swift build -c release --product anelm`) before `swift test -c release`.
public func builtANELMBinary() -> URL? {
    let built = ["release", "debug"].map { repositoryRoot.appendingPathComponent(".build/\($0)/anelm") }
        .filter { FileManager.default.isExecutableFile(atPath: $0.path) }
    let modified = { (url: URL) in (try? url.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? .distantPast }
    return built.max { modified($0) < modified($1) }
}

/// The installed default embedder (scripts/test installs it with `anelm embed`), else nil.
public func defaultEmbedderPath() -> URL? {
    FileManager.default.fileExists(atPath: DefaultEmbedder.path.appendingPathComponent("config.json").path) ? DefaultEmbedder.path : nil
}
