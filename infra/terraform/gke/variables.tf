variable "project_id" {
  description = "Google Cloud project that owns the cluster and the image repository."
  type        = string
}

variable "region" {
  description = "Region of the cluster, its node pools and the Artifact Registry repository."
  type        = string
  default     = "us-central1"
}

variable "zones" {
  description = "Zones for the node pools; pick zones that offer gpu_type (gcloud compute accelerator-types list)."
  type        = list(string)
  default     = ["us-central1-a"]
}

variable "cluster_name" {
  description = "Name of the GKE cluster."
  type        = string
  default     = "reviosa"
}

variable "release_channel" {
  description = "GKE release channel (RAPID, REGULAR, STABLE)."
  type        = string
  default     = "REGULAR"
}

variable "cpu_machine_type" {
  description = "Machine type of the CPU pool (MinIO, Postgres, MLflow, KFP, CPU pipeline steps)."
  type        = string
  default     = "e2-standard-8"
}

variable "cpu_min_nodes" {
  description = "Minimum CPU nodes per zone."
  type        = number
  default     = 1
}

variable "cpu_max_nodes" {
  description = "Maximum CPU nodes per zone."
  type        = number
  default     = 4
}

variable "gpu_machine_type" {
  description = "Machine type of the GPU pool; must accept gpu_type (g2-standard-* carries NVIDIA L4)."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_type" {
  description = "Accelerator type of the GPU pool (gcloud compute accelerator-types list)."
  type        = string
  default     = "nvidia-l4"
}

variable "gpus_per_node" {
  description = "GPUs attached to each GPU node."
  type        = number
  default     = 1
}

variable "gpu_min_nodes" {
  description = "Minimum GPU nodes per zone; 0 lets the pool scale to zero when nothing runs."
  type        = number
  default     = 0
}

variable "gpu_max_nodes" {
  description = "Maximum GPU nodes per zone."
  type        = number
  default     = 2
}

variable "gpu_spot" {
  description = "Use Spot VMs for the GPU pool (cheaper, can be preempted; KFP retries preempted steps)."
  type        = bool
  default     = false
}

variable "gpu_taint" {
  description = "Taint on every GPU node, so only pods that tolerate it (GPU steps, the predictor) land there."
  type = object({
    key    = string
    value  = string
    effect = string
  })
  default = {
    key    = "nvidia.com/gpu"
    value  = "present"
    effect = "NO_SCHEDULE"
  }
}

variable "disk_size_gb" {
  description = "Boot disk size of every node; the project image with CUDA torch is about 10 GB."
  type        = number
  default     = 100
}

variable "network" {
  description = "VPC network of the cluster (its Cloud NAT router is created there)."
  type        = string
  default     = "default"
}

variable "private_endpoint" {
  description = "Reach the control plane only from inside the VPC (true), or also from master_authorized_networks (false)."
  type        = bool
  default     = false
}

variable "master_ipv4_cidr_block" {
  description = "Private /28 range of the control plane; must not overlap the VPC's subnets."
  type        = string
  default     = "172.16.0.32/28"
}

variable "master_authorized_networks" {
  description = "Networks allowed to reach the control plane's public endpoint (e.g. your office or VPN egress); empty: none."
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  default = []
  validation {
    condition     = alltrue([for n in var.master_authorized_networks : !endswith(n.cidr_block, "/0")])
    error_message = "An authorized network of /0 would open the control plane to the internet."
  }
}
