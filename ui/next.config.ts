import type { NextConfig } from "next";

// A static export (ui/out) that the gateway serves at "/". Trailing slashes make every page a
// folder with an index.html, which any static file server resolves.
const nextConfig: NextConfig = {
  output: "export",
  trailingSlash: true,
  images: { unoptimized: true },
  poweredByHeader: false,
  reactStrictMode: true,
  productionBrowserSourceMaps: false,
};

export default nextConfig;
