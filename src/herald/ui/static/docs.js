// Starts Swagger UI on /api/v1/docs (a file, not an inline script: the CSP allows only 'self').
// "Authorize" takes a Herald token (herald tokens create); it is kept in this page only.
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
