import ANELM
import Foundation
import Hummingbird

/// The page's three files, held in the binary (no build step, no CDN, nothing fetched from elsewhere).
enum WebPage {
    /// Scripts and styles only from this server's own files, requests only to it, nothing framed or posted away:
    /// even a page bug that let model output in as markup could not run it.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
        + "form-action 'none'; frame-ancestors 'none'"
}

/// `GET /` (the page), `/app.js`, `/app.css`: open without the API key (they hold no data; the page asks for the key).
extension Endpoints {
    static let webPagePaths: Set<String> = ["/", "/app.js", "/app.css"]

    func registerWebPage(_ router: Router<Context>) {
        router.get("/") { _, _ in Self.webFile(WebPage.html, type: "text/html; charset=utf-8") }
        router.get("/app.js") { _, _ in Self.webFile(WebPage.script, type: "text/javascript; charset=utf-8") }
        router.get("/app.css") { _, _ in Self.webFile(WebPage.style, type: "text/css; charset=utf-8") }
    }

    static func webFile(_ text: String, type: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        // The files change with the binary: a browser asks again each time (cheap: they are small).
        headers[.cacheControl] = "no-cache"
        headers[.contentSecurityPolicy] = WebPage.contentSecurityPolicy
        headers[.xContentTypeOptions] = "nosniff"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
