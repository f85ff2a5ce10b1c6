import Foundation

public enum EmbedderLoader {
    public static func load(_ url: URL) throws -> any TextEmbedder {
        throw ANELMError("EmbedderLoader.load is not in this branch")
    }
}
