output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.main.name
}

output "cluster_endpoint" {
  description = "Control-plane endpoint of the cluster."
  value       = google_container_cluster.main.endpoint
  sensitive   = true
}

output "get_credentials" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.main.name} --region ${var.region} --project ${var.project_id}"
}

output "image_repository" {
  description = "Where to push the project image; set it in manifests/overlays/gpu-cloud with kustomize edit set image."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}/reviosa"
}

output "gpu_node_selector" {
  description = "Node label that selects the GPU pool (used by the gpu-cloud overlay and KFP GPU steps)."
  value       = google_container_node_pool.gpu.node_config[0].labels
}

output "gpu_taint" {
  description = "Taint on GPU nodes that GPU pods must tolerate."
  value       = var.gpu_taint
}
