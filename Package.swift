// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "anelm",
    platforms: [.macOS(.v14), .iOS(.v17)],
    products: [
        .library(name: "ANELM", targets: ["ANELM"]),
        .library(name: "ANELMContext", targets: ["ANELMContext"]),
        .executable(name: "anelm", targets: ["anelm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The server's per-connection handler (timeouts, closing connections with unread bodies).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // The context store (chunks, vectors, FTS5, the feedback log) in one SQLite file.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // Hot loops in C with per-function ISA attributes and runtime dispatch: the library stays
        // usable as a SwiftPM dependency (no unsafeFlags) and still gets AVX2/FMA/F16C on x86_64.
        .target(name: "CANELMKernels"),
        .target(name: "ANELM", dependencies: ["CANELMKernels"]),
        // Runs an exported .mlpackage through Core ML (Apple platforms; empty elsewhere).
        .target(name: "ANELMCoreML", dependencies: ["ANELM", "CANELMKernels"]),
        // Installing models with pip (spawns processes): used by the CLI, never linked into apps.
        .target(name: "ANELMInstall", dependencies: ["ANELM"]),
        // The context engine (chunk store, retrieval, grounded answers, the relevance model): its own target so that
        // apps that only generate do not link SQLite.
        .target(name: "ANELMContext", dependencies: ["ANELM", "CANELMKernels", .product(name: "GRDB", package: "GRDB.swift")]),
        // The OpenAI-compatible HTTP server behind `anelm serve`.
        .target(
            name: "ANELMServer",
            dependencies: [
                "ANELM",
                "ANELMContext",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "anelm",
            dependencies: ["ANELM", "ANELMContext", "ANELMCoreML", "ANELMInstall", "ANELMServer", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Test-only: where the built `anelm` binary and the installed default embedder are, for the tests that run them.
        .target(name: "ANELMTestSupport", dependencies: ["ANELM"], path: "Tests/ANELMTestSupport"),
        .testTarget(name: "ANELMTests", dependencies: ["ANELM", "CANELMKernels", "ANELMTestSupport"]),
        .testTarget(name: "ANELMServerTests", dependencies: ["ANELMServer", "ANELM", "ANELMContext", "ANELMTestSupport"]),
        .testTarget(name: "ANELMContextTests", dependencies: ["ANELMContext", "ANELM"]),
        // Test-only: Apple's Core ML API as published, with the fp16 executor standing in for Core ML, and the
        // Core ML runtime's own source compiled against it, so the runtime is compiled and run on Linux.
        .target(name: "CoreMLShim", dependencies: ["ANELM", "CANELMKernels"], path: "Tests/CoreMLShim"),
        .target(
            name: "ANELMCoreMLOnShim", dependencies: ["ANELM", "CANELMKernels", "CoreMLShim"], path: "Tests/ANELMCoreMLOnShim",
            swiftSettings: [.define("ANELM_COREML_SHIM")]),
        .testTarget(name: "CoreMLRuntimeTests", dependencies: ["ANELMCoreMLOnShim", "CoreMLShim", "ANELM"]),
    ],
    swiftLanguageModes: [.v5]
)
