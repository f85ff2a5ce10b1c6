// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "anelm",
    platforms: [.macOS(.v14), .iOS(.v17)],
    products: [
        .library(name: "ANELM", targets: ["ANELM"]),
        .executable(name: "anelm", targets: ["anelm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Hot loops in C with per-function ISA attributes and runtime dispatch: the library stays
        // usable as a SwiftPM dependency (no unsafeFlags) and still gets AVX2/FMA/F16C on x86_64.
        .target(name: "CANELMKernels"),
        .target(name: "ANELM", dependencies: ["CANELMKernels"]),
        .executableTarget(
            name: "anelm",
            dependencies: ["ANELM", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "ANELMTests", dependencies: ["ANELM", "CANELMKernels"]),
    ],
    swiftLanguageModes: [.v5]
)
